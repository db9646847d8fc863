"""Randomly shifted views of an image for the CLIP loss of an optimization.

Why. Optimizing a latent against CLIP on the one rendered image finds changes that raise the CLIP score
without making the attribute (an adversarial direction of CLIP): on the toy model the CLIP gain of 50
optimization steps was the highest of all engines while the evaluation classifier saw the prompt on 64% of
faces. Scoring the mean embedding of a few copies shifted by a few pixels asks for a change that CLIP sees
wherever it lies, which the image's content does and pixel-precise patterns do not (success 0.64 -> 0.79,
docs/benchmarks.md). Shifts are whole pixels over a reflected border: no resampling.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def view_offsets(views: int, shift: float, height: int, width: int,
                 generator: torch.Generator) -> torch.Tensor | None:
    """[views,2] random whole-pixel (dy, dx) crop offsets into the image padded by `view_padding` on each side
    (None for views 0), drawn from `generator` (a CPU generator: no device sync). Drawn outside the optimized
    function, so that a compiled step takes them as an input instead of breaking its graph."""
    if views <= 0:
        return None
    p = view_padding(shift, height, width)
    if p == 0:
        return torch.zeros(views, 2, dtype=torch.long)
    return torch.randint(0, 2 * p + 1, (views, 2), generator=generator)


def view_padding(shift: float, height: int, width: int) -> int:
    """The largest shift in pixels: round(shift * height), within the reflection's limit."""
    return min(int(round(shift * height)), height - 1, width - 1)


def shifted_views(img: torch.Tensor, offsets: torch.Tensor, shift: float) -> torch.Tensor:
    """[views*N,C,H,W]: copies of img [N,C,H,W] (view-major), view v moved by offsets[v] (`view_offsets`) over a
    reflected border of `view_padding` pixels. One offset per view serves the whole batch, so a sample's views
    do not depend on the others. Differentiable in img."""
    _, c, h, w = img.shape
    p = view_padding(shift, h, w)
    if p == 0:
        return img.repeat(offsets.shape[0], 1, 1, 1)
    padded = F.pad(img, (p, p, p, p), mode="reflect")
    if torch.compiler.is_compiling():  # offsets as a tensor index: one graph for every draw of them
        rows = offsets[:, :1] + torch.arange(h, device=offsets.device)
        cols = offsets[:, 1:] + torch.arange(w, device=offsets.device)
        crops = padded[:, :, rows[:, :, None], cols[:, None, :]]  # [N,C,views,H,W]
        return crops.permute(2, 0, 1, 3, 4).reshape(-1, c, h, w)
    return torch.cat([padded[:, :, dy:dy + h, dx:dx + w] for dy, dx in offsets.tolist()])  # slices: faster


def view_embedding(clip, img: torch.Tensor, offsets: torch.Tensor | None, shift: float) -> torch.Tensor:
    """Unit mean CLIP embedding [N,E] of the shifted copies of each image (offsets None: the image as it is)."""
    if offsets is None:
        return clip.encode_image(img)
    emb = clip.encode_image(shifted_views(img, offsets, shift))
    return F.normalize(emb.view(offsets.shape[0], img.shape[0], -1).mean(0), dim=-1)
