"""The universal mapper engine: one trained network edits toward any text or reference image.

w_hat = w + residual_scale * strength * M(w, d) (the change scaled up to a W+ norm of at least `min_change`
when one is set), where d is a unit CLIP image-space direction: for a text
prompt the prompt's image direction (`image_directions.image_direction`, the space the mapper was trained
in), for a reference image unit(e(reference) - e(source)) per face. Files: `.safetensors` with the
UniversalMapper state dict and JSON metadata (architecture, the generator and CLIP it was trained for,
training settings), read and found by `styleclip.store.mappers`; the engine takes the built network.

With `beta` set the edit is disentangled as global directions are: the mapper's change in style space is kept
only on the channels whose relevance to d is at least beta (|fs3 . d| >= beta) and the others keep the
source's styles (toRGB layers included), so what the prompt does not name stays; the edit is then an S-space
latent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from styleclip.encoders import targets as idir
from styleclip.errors import InputError
from styleclip.nets.universal_mapper import UniversalMapper
from styleclip.types import EditResult, Latent, ProgressFn, Prompt
from styleclip.editors.auto_strength import AutoStrengthConfig, pick_strengths
from styleclip.editors.base import check_fits_generator, register_engine, report, unpack_mapper
from styleclip.stylespace.directions import channel_scores
from styleclip.stylespace.relevance import Relevance

@dataclass(frozen=True)
class UniversalMapperConfig:
    """mapper: a UniversalMapper or a loaded universal mapper file (`store.mappers.MapperFile`; the factory
    reads a file or 'universal'). relevance: the generator's Relevance, needed with beta. auto: pick the
    strength per face
    (`auto_strength`). The target gain for auto strength is `gain_fraction` of the separation along d of
    the bank faces that match the prompt from the rest (text), or of (e(reference) - e(source)) . d."""

    mapper: Any = None
    residual_scale: float | None = None  # None: the file's
    batch_size: int = 8
    auto: bool = False
    auto_strength: AutoStrengthConfig = field(default_factory=AutoStrengthConfig)
    gain_fraction: float = 0.6
    beta: float | None = None  # keep style changes only where |relevance . d| >= beta; None: the whole W+ edit
    # the mapper's change per face is scaled up to at least this W+ norm (0: as it comes). The mapper answers
    # directions that are a small part of the differences between random training faces (glasses) with a small
    # change: a third of a mohawk's on toy-faces, too small for the attribute to appear
    min_change: float = 0.0
    relevance: Any = field(default=None, compare=False)

    def __post_init__(self):
        if self.beta is not None and not 0 <= self.beta <= 1:
            raise ValueError(f"beta must be in [0, 1] (a relevance cosine), got {self.beta}")
        if not (self.min_change >= 0 and self.min_change < float("inf")):
            raise ValueError(f"min_change must be a finite number >= 0, got {self.min_change}")


@register_engine("universal")
class UniversalMapperEditor:
    """Applies the universal mapper conditioned on the prompt's CLIP image-space direction."""

    name = "universal"
    config_class = UniversalMapperConfig

    def __init__(self, generator, clip, identity=None, *, config: UniversalMapperConfig = UniversalMapperConfig()):
        self.generator, self.clip, self.identity, self.config = generator, clip, identity, config
        m, self.info = unpack_mapper(config.mapper)
        if not isinstance(m, UniversalMapper):
            raise TypeError(f"config.mapper must be a UniversalMapper or a loaded universal mapper file, got "
                            f"{type(m).__name__} (files and 'universal' are read by factory.create_editor)")
        check_fits_generator(m, generator, "universal mapper")
        self.mapper = m.to(generator.w_avg.device).eval().requires_grad_(False)
        scale = config.residual_scale if config.residual_scale is not None else self.info.get("residual_scale", 1.0)
        self.residual_scale = float(scale)
        self.relevance = None
        if config.beta is not None:
            if not isinstance(config.relevance, Relevance):
                raise TypeError("beta needs the generator's channel relevance (config.relevance, a Relevance; "
                                "factory.create_editor finds it as the global-directions engine does)")
            self.relevance = config.relevance

    def channel_masks(self, d: torch.Tensor) -> list[torch.Tensor | None]:
        """Per entry of g.layers: [N,C] 1/0 (keep the mapper's change) on relevance layers, None elsewhere."""
        keep = (channel_scores(self.relevance, d.t()).t().abs() >= self.config.beta).float()  # [N, rows]
        if not bool(keep.sum(1).all()):
            raise InputError(f"beta {self.config.beta:g} keeps no style channel for this prompt; lower --beta")
        masks: list[torch.Tensor | None] = [None] * len(self.generator.layers)
        row = 0
        for k in self.relevance.layers:
            c = self.generator.layers[k].channels
            masks[k] = keep[:, row:row + c]
            row += c
        return masks

    def text_direction(self, target: str, neutral: str = "a face") -> tuple[torch.Tensor, torch.Tensor]:
        """(unit image-space direction d [E] of a text prompt, the raw bank difference [E])."""
        return idir.prompt_direction(self.clip, idir.face_bank(self.generator, self.clip), target, neutral)

    def change(self, w: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """The W+ change [N,num_ws,D] at strength 1 for latents w [N,num_ws,D] and unit directions d [N,E]
        (residual_scale * M(w, d), scaled up to a W+ norm of min_change when smaller)."""
        residual = self.residual_scale * self.mapper(w, d)
        if self.config.min_change > 0:
            size = residual.norm(dim=(1, 2), keepdim=True)
            residual = residual * (self.config.min_change / size.clamp_min(1e-12)).clamp_min(1.0)
        return residual

    def teacher(self, target: str, neutral: str = "a face"):
        """w [N,num_ws,D] -> this mapper's whole W+ change toward a text prompt (what a per-prompt mapper is
        distilled from, `MapperTrainer.distill`)."""
        d = self.text_direction(target, neutral)[0]

        @torch.no_grad()
        def change(w: torch.Tensor) -> torch.Tensor:
            w = w.to(self.generator.w_avg.device, torch.float32)
            return self.change(w, d.expand(w.shape[0], -1))

        return change

    def directions(self, prompt: Prompt, src_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(unit directions [N,E], target embedding [1,E] or [N,E] for the metrics, target gain [N])."""
        n = src_img.shape[0]
        e_src = self.clip.encode_image(src_img).float()
        if prompt.image is not None:
            ref = idir.reference_embedding(self.clip, prompt.image)
            diff = ref - e_src
            d = F.normalize(diff, dim=-1)
            return d, ref, (diff * d).sum(-1) * self.config.gain_fraction
        d, raw = self.text_direction(prompt.target, prompt.neutral)
        gain = float(raw @ d) * self.config.gain_fraction
        text = self.clip.encode_text([prompt.target]).float()
        return d.expand(n, -1), text, torch.full((n,), gain, device=e_src.device)

    @torch.no_grad()
    def edit(self, latent: Latent, prompt: Prompt, *, progress: ProgressFn | None = None) -> EditResult:
        g, cfg = self.generator, self.config
        if latent.styles is not None:
            raise InputError("the universal mapper edits W+ latents; this latent is in S space (a global, --space "
                             "styles or --beta universal-mapper edit): edit it with --engine global or optimize "
                             "--space styles, or make the first edit with --beta 0 (a W+ latent)")
        w_all = latent.w_plus
        if w_all.shape[1:] != (g.num_ws, g.config.style_dim):
            raise InputError(f"latent must be [N,{g.num_ws},{g.config.style_dim}], got {list(w_all.shape)}")
        n = w_all.shape[0]
        imgs, srcs, w_hats, before, after, ident, strengths, reached = [], [], [], [], [], [], [], []
        for i in range(0, n, cfg.batch_size):
            w = w_all[i:i + cfg.batch_size].to(g.w_avg.device, torch.float32)
            src = g.synthesis(w)
            d, target, goal = self.directions(prompt, src)
            residual = self.change(w, d)
            masks = self.channel_masks(d) if self.relevance is not None else None
            s_src = g.styles(w) if masks is not None else None

            def edited(s, w=w, residual=residual, masks=masks, s_src=s_src):
                """The edit at strength s [N]: W+, or with beta the source's styles plus the kept changes."""
                w_hat = w + s.view(-1, 1, 1) * residual
                if masks is None:
                    return w_hat
                return [a if m is None else a + m.to(a) * (b - a) for a, b, m in zip(s_src, g.styles(w_hat), masks)]

            def render(s, edited=edited):
                e = edited(s)
                return g.synthesis(e) if masks is None else g.synthesis_from_styles(e)

            if cfg.auto:
                s, img, info = pick_strengths(render, clip=self.clip, identity=self.identity, source_img=src,
                                              direction=d, target_gain=goal, config=cfg.auto_strength,
                                              base=prompt.strength)
                reached += info.get("gain_reached", [])
            else:
                s = torch.full((w.shape[0],), float(prompt.strength), device=w.device)
                img = render(s)
            strengths += s.tolist()
            w_hats.append(edited(s))
            imgs.append(img)
            srcs.append(src)
            before += self._similarity(src, target)
            after += self._similarity(img, target)
            if self.identity is not None:
                ident += (self.identity.embed(img) * self.identity.embed(src)).sum(-1).tolist()
            report(progress, min(i + cfg.batch_size, n), n)
        metrics: dict = {"strength": strengths, "clip_before": before, "clip_after": after}
        if reached:
            metrics["gain_reached"] = reached
        if ident:
            metrics["identity_similarity"] = ident
        if self.relevance is not None:
            metrics["beta"] = self.config.beta
        latent = torch.cat(w_hats) if self.relevance is None else [torch.cat(x) for x in zip(*w_hats)]
        return EditResult(image=torch.cat(imgs), latent=latent, engine=self.name, metrics=metrics,
                          source_image=torch.cat(srcs))

    def _similarity(self, img: torch.Tensor, target: torch.Tensor) -> list[float]:
        e = self.clip.encode_image(img).float()
        return (e * target.to(e)).sum(-1).tolist()


__all__ = ["UniversalMapperEditor", "UniversalMapperConfig"]
