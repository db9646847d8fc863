"""CLIP through open_clip (the only module that imports it): text embeddings with prompt templates and a
differentiable image embedding of generator output.

Image path. The official StyleCLIP resize (nearest upsample x7, then average pooling with kernel size/32)
is a fractional box filter: output pixel j averages the input over [j*s/224, (j+1)*s/224). We apply that
filter as a separable [224, s] matrix (M @ x @ M^T), equal to the official path to fp32 rounding without
building the 7x upsampled image (616 MB at 1024). Unlike the official code (upstream issue #38) we then
map [-1,1] to [0,1] and apply CLIP's mean/std normalisation, as CLIP was trained; `official_input=True`
reproduces the official behaviour (raw [-1,1] values into CLIP).
"""
from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

DEFAULT_MODEL = "ViT-B-32-quickgelu"  # plain "ViT-B-32" builds GELU, not the QuickGELU OpenAI trained with
DEFAULT_PRETRAINED = "openai"


def imagenet_templates() -> list[str]:
    """The paper's 79 prompt templates: CLIP's 80 ImageNet templates minus 'a photo of many {}.'."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    templates = [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    return [t for t in templates if t != "a photo of many {}."]


def box_resize_matrix(in_size: int, out_size: int = 224, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """[out_size, in_size] weights of the fractional box filter (the official upsample-x7 + avg-pool path).

    Row j holds the overlap of [j*in/out, (j+1)*in/out) with each input pixel, divided by the interval length;
    computed with exact fractions so every row sums to 1.
    """
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    step = Fraction(in_size, out_size)
    for j in range(out_size):
        lo, hi = j * step, (j + 1) * step
        i = int(lo)
        while i < hi and i < in_size:
            overlap = min(hi, i + 1) - max(lo, i)
            if overlap > 0:
                m[j, i] = float(overlap / step)
            i += 1
    return m.to(dtype=dtype, device=device)


class ClipEncoder(nn.Module):
    """A frozen open_clip model with StyleCLIP's text and image paths."""

    def __init__(self, model: nn.Module, tokenizer, *, mean=OPENAI_MEAN, std=OPENAI_STD,
                 official_input: bool = False, name: str = ""):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.official_input = official_input
        self.name = name
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        size = getattr(model.visual, "image_size", 224)
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self._resize: dict[tuple, torch.Tensor] = {}
        self._text_cache: dict[tuple, torch.Tensor] = {}

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, model_name: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_PRETRAINED, *,
                        cache_dir: str | None = None, **kwargs) -> "ClipEncoder":
        """Any open_clip model by name; `pretrained` is an open_clip tag or a local weights file."""
        import open_clip

        model = open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir)
        pp = getattr(model.visual, "preprocess_cfg", None) or {}
        mean, std = pp.get("mean", OPENAI_MEAN), pp.get("std", OPENAI_STD)
        return cls(model, open_clip.get_tokenizer(model_name), mean=mean, std=std, name=model_name, **kwargs)

    @classmethod
    def from_config(cls, config: dict, *, state_dict: dict | None = None, seed: int = 0, name: str = "custom",
                    **kwargs) -> "ClipEncoder":
        """An open_clip `CLIP` from a config dict ({embed_dim, vision_cfg, text_cfg, quick_gelu}) with its
        real tokenizer; random weights from `seed` unless a state dict is given (loaded strictly)."""
        import open_clip
        from open_clip.tokenizer import SimpleTokenizer

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.CLIP(**config)
        if state_dict is not None:
            model.load_state_dict(state_dict, strict=True)
        ctx = config.get("text_cfg", {}).get("context_length", 77)
        return cls(model, SimpleTokenizer(context_length=ctx), name=name, **kwargs)

    # ---- text ---------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.mean.device

    @torch.no_grad()
    def encode_text(self, texts: str | Sequence[str], templates: Sequence[str] | None = None) -> torch.Tensor:
        """Unit text embeddings [T, D]. With templates: embed every filled template, normalise, average,
        normalise again (STYLECLIP_SPEC 3.4). Results are cached per (text, templates)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("no text prompt given")
        for t in texts:  # checked before templating: "a photo of a ." must not pass for an empty prompt
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"empty text prompt {t!r}")
        if templates is not None and (not templates or any("{}" not in tpl for tpl in templates)):
            raise ValueError("prompt templates must be a non-empty list of strings containing '{}'")
        key_t = tuple(templates) if templates is not None else None
        missing = [t for t in dict.fromkeys(texts) if (t, key_t) not in self._text_cache]
        if missing:
            if templates is None:
                emb = self._embed_strings(missing)
            else:
                filled = [tpl.format(t) for t in missing for tpl in templates]
                per = self._embed_strings(filled).view(len(missing), len(templates), -1)
                emb = F.normalize(per.mean(1), dim=-1)
            for t, e in zip(missing, emb):
                self._text_cache[(t, key_t)] = e
        return torch.stack([self._text_cache[(t, key_t)] for t in texts]).to(self.device)

    def _embed_strings(self, strings: list[str], batch: int = 256) -> torch.Tensor:
        for s in strings:
            if not s.strip():
                raise ValueError("empty text prompt")
        out = []
        for i in range(0, len(strings), batch):
            tokens = self.tokenizer(strings[i:i + batch]).to(self.device)
            out.append(F.normalize(self._encode_tokens(tokens).float(), dim=-1))
        return torch.cat(out)

    def _encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """open_clip's encode_text, run only over the tokens up to the last end-of-text token of the batch.

        CLIP's text transformer is causal and pools at the end-of-text token (the largest id), so the padding
        after it cannot change the result: dropping it gives the same embedding several times faster
        (prompts are ~10 of 77 tokens). Models of another shape use open_clip's own encode_text."""
        m = self.model
        mask = getattr(m, "attn_mask", None)
        if not (hasattr(m, "token_embedding") and getattr(m, "text_pool_type", "argmax") == "argmax"
                and isinstance(mask, torch.Tensor) and getattr(m, "text_projection", None) is not None):
            return m.encode_text(tokens)
        n = int(tokens.argmax(dim=-1).max()) + 1
        tokens = tokens[:, :n]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:n].to(cast)
        x = m.ln_final(m.transformer(x, attn_mask=mask[:n, :n]))
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        proj = m.text_projection
        return proj(x) if isinstance(proj, nn.Module) else x @ proj

    # ---- image --------------------------------------------------------------------------------------
    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """Generator output [N,3,H,W] in [-1,1] -> CLIP input [N,3,S,S] (box filter, then normalisation)."""
        h, w = img.shape[-2:]
        x = img
        if (h, w) != (self.input_size, self.input_size):
            mh = self._resize_matrix(h, img)
            mw = mh if w == h else self._resize_matrix(w, img)
            x = mh @ x @ mw.t()  # rows first: [N,C,S,W] is the only intermediate (faster than einsum here)
        if self.official_input:
            return x
        return ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings [N, D]; differentiable with respect to img."""
        emb = self.model.encode_image(self.preprocess(img))
        return F.normalize(emb if emb.dtype == torch.float64 else emb.float(), dim=-1)

    def similarity(self, img: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [N, T] between images and unit text embeddings."""
        return self.encode_image(img) @ text_emb.to(self.device).t()

    def _resize_matrix(self, n: int, like: torch.Tensor) -> torch.Tensor:
        key = (n, like.device, like.dtype)
        if key not in self._resize:
            self._resize[key] = box_resize_matrix(n, self.input_size, dtype=like.dtype, device=like.device)
        return self._resize[key]


def official_resize(img: torch.Tensor, out_size: int = 224) -> torch.Tensor:
    """The official StyleCLIP path (nearest upsample x7, avg-pool with kernel size/32): the reference that
    `box_resize_matrix` reproduces. Memory-hungry at 1024 (7168 px intermediate); for tests and baselines."""
    size = img.shape[-1]
    up = F.interpolate(img, scale_factor=7, mode="nearest")
    return F.avg_pool2d(up, kernel_size=size * 7 // out_size)


# A tiny random CLIP for the `debug` model set: real tokenizer, 32 px images.
DEBUG_CLIP_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
