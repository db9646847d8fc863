"""CLIP targets in image space: reference images, and text turned into an image-side direction.

Why. CLIP's text direction t(target) - t(neutral) is not the direction in which the image embedding moves
when the attribute changes (on the toy model: cosine 0.37 for glasses, docs/toy-faces.md), so engines that
follow it change other things first. `image_direction` finds the image-side direction of a prompt without
labels: embed a bank of generated faces, rank them by CLIP's own preference for the target over the neutral
text, and take unit(mean embedding of the top fraction - mean embedding of the bottom half). Attributes the
prompt does not name are spread alike over both groups and cancel; what remains is how images that match the
prompt differ from those that do not, in the space where the engines measure their edits.

A reference image (`--target-image`) is embedded directly (`reference_embedding`); its direction from a
source is unit(e(reference) - e(source)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from styleclip.errors import InputError

BANK_SIZE = 1000  # generated faces embedded once per (generator, CLIP); about 15 s on the toy model (1 CPU thread)
BANK_SEED = 31337
BANK_TRUNCATION = 0.7
TOP_FRACTION = 0.1  # faces counted as showing the prompt


@dataclass
class FaceBank:
    """w [N,D] of sampled faces and their unit CLIP image embeddings [N,E]."""

    w: torch.Tensor
    emb: torch.Tensor


_BANKS: dict[tuple, tuple] = {}  # key -> (generator, clip, bank): the models are kept so an id is never reused


@torch.no_grad()
def face_bank(generator, clip, *, n: int | None = None, seed: int = BANK_SEED, truncation: float = BANK_TRUNCATION,
              batch: int = 100) -> FaceBank:
    """The bank of `n` (default BANK_SIZE) sampled faces for this generator and CLIP (kept in memory per pair
    of models)."""
    n = BANK_SIZE if n is None else n
    key = (id(generator), id(clip), n, seed, truncation)
    if key not in _BANKS or _BANKS[key][0] is not generator or _BANKS[key][1] is not clip:
        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(n, generator.config.style_dim, generator=rng)
        dev = generator.w_avg.device
        ws, embs = [], []
        for i in range(0, n, batch):
            w = generator.mapping(z[i:i + batch].to(dev), truncation)
            embs.append(clip.encode_image(generator.synthesis(generator.broadcast(w))).float().cpu())
            ws.append(w.cpu())
        _BANKS[key] = (generator, clip, FaceBank(torch.cat(ws), torch.cat(embs)))
    return _BANKS[key][2]


def text_scores(clip, emb: torch.Tensor, target: str, neutral: str) -> torch.Tensor:
    """How much CLIP prefers the target text over the neutral one for each image embedding [N]."""
    t = clip.encode_text([neutral, target]).float().cpu()
    return emb @ t[1] - emb @ t[0]


@torch.no_grad()
def prompt_direction(clip, bank: FaceBank, target: str, neutral: str = "a face", *,
                     top_fraction: float = TOP_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit image-side direction [E] of `target` relative to `neutral`, the raw difference [E] of the mean
    embeddings of the bank faces CLIP ranks as matching and the rest: its dot product with a unit direction u
    is how far matching faces lie from the others along u) from ranking a face bank."""
    s = text_scores(clip, bank.emb, target, neutral)
    order = torch.argsort(s, descending=True)
    k = max(1, int(round(top_fraction * len(order))))
    d = bank.emb[order[:k]].mean(0) - bank.emb[order[len(order) // 2:]].mean(0)
    if d.norm() < 1e-8:
        raise InputError(f"the prompt {target!r} does not separate any generated faces from {neutral!r}")
    return F.normalize(d, dim=0).to(clip.device), d.to(clip.device)


def image_direction(generator, clip, target: str, neutral: str = "a face", **kwargs) -> torch.Tensor:
    """Unit image-side CLIP direction [E] of `target` (relative to `neutral`) on this generator's faces."""
    return prompt_direction(clip, face_bank(generator, clip), target, neutral, **kwargs)[0]


@torch.no_grad()
def reference_embedding(clip, image: torch.Tensor) -> torch.Tensor:
    """Unit CLIP embedding [1,E] of a reference image (img [1,3,H,W] or [3,H,W] in [-1,1])."""
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[1] != 3:
        raise InputError(f"a target image must be [1,3,H,W], got {list(image.shape)}")
    return clip.encode_image(image.to(clip.device, torch.float32)).float()
