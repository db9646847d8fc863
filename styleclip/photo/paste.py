"""Paste an edited aligned face back into the original photo.

The aligned crop was cut along `AlignedFace.quad` (faces.align_face); its inverse maps every photo pixel
to crop coordinates, where the edit and a feathered face-region mask are sampled bilinearly. The photo is
blended as photo + mask * (edit - photo): where the mask is 0 (outside the face region, and everywhere
outside the crop) the photo's pixels come back bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from styleclip.photo.faces import AlignedFace, source_to_crop


@dataclass(frozen=True)
class MaskConfig:
    """The face region, in fractions of the aligned crop's side: a rounded square `inset` inside the crop's
    border (mask 0 beyond it) that rises smoothly to 1 over `feather`, corners rounded by `corner`. The
    whole crop minus a margin, not a face oval: hair edits (mohawk, afro) reach well past the face."""

    inset: float = 0.02
    feather: float = 0.12
    corner: float = 0.2

    def __post_init__(self):
        if not (0 <= self.inset < 0.5 and 0 < self.feather and self.inset + self.feather < 0.5):
            raise ValueError(f"mask inset {self.inset} and feather {self.feather} must leave a face region")


def face_mask(size: int, config: MaskConfig = MaskConfig()) -> np.ndarray:
    """The feathered face-region mask [size,size] float32 in [0,1] of an aligned crop."""
    t = (np.arange(size, dtype=np.float64) + 0.5) / size
    q = np.abs(np.stack(np.meshgrid(t, t), -1) - 0.5)  # [size,size,2], distance from the centre per axis
    half, r = 0.5 - config.inset, min(config.corner, 0.5 - config.inset)
    k = q - (half - r)
    sdf = np.linalg.norm(np.maximum(k, 0), axis=-1) + np.minimum(k.max(-1), 0) - r  # < 0 inside
    x = np.clip(-sdf / config.feather, 0, 1)
    return (x * x * (3 - 2 * x)).astype(np.float32)  # smoothstep: no visible edge


def crop_to_source(points, quad: np.ndarray, size: int) -> np.ndarray:
    """Crop index coordinates [K,2] of a size x size crop cut along `quad` -> source index coordinates
    (the inverse of faces.source_to_crop)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    q = np.asarray(quad, dtype=np.float64)
    ax, ay = q[3] - q[0], q[1] - q[0]
    uv = (p + 0.5) / size
    return q[0] + uv[:, :1] * ax + uv[:, 1:] * ay


def _as_float_image(edited) -> torch.Tensor:
    """[3,H,W] / [1,3,H,W] in [-1,1], or a PIL image -> [1,3,H,W] float32 in [0,255]."""
    if isinstance(edited, Image.Image):
        arr = np.asarray(edited.convert("RGB"), dtype=np.float32)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0)
    x = edited.detach().float().cpu()
    x = x.unsqueeze(0) if x.ndim == 3 else x[:1]
    return (x.clamp(-1, 1) + 1) * 127.5


def paste_back(photo: Image.Image, edited, aligned: AlignedFace, *,
               mask: MaskConfig = MaskConfig()) -> Image.Image:
    """The whole photo with `edited` (the edited aligned crop: [3,H,W] in [-1,1] or PIL) warped back
    along aligned.quad and blended in with the feathered face mask. Same size and mode (RGB) as the photo."""
    base = np.asarray(photo.convert("RGB"), dtype=np.float32)
    out = base.copy()
    h, w = base.shape[:2]
    quad = np.asarray(aligned.quad, dtype=np.float64)
    x0, y0 = np.floor(quad.min(0)).astype(int)
    x1, y1 = np.ceil(quad.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return photo.convert("RGB").copy()
    img = _as_float_image(edited)
    side = float(np.hypot(*(quad[3] - quad[0])))  # the face's size in the photo
    size = img.shape[-1]
    if size > 1.5 * side:  # shrinking a lot: anti-alias first instead of point-sampling the big crop
        size = max(8, int(np.ceil(side)))
        img = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.from_numpy(face_mask(size, mask))[None, None]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    uv = source_to_crop(np.stack([xx.ravel(), yy.ravel()], 1), quad, size)
    grid = torch.from_numpy((uv + 0.5) / size * 2 - 1).float().view(1, y1 - y0, x1 - x0, 2)
    face = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    alpha = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]
    face, alpha = face.permute(1, 2, 0).numpy(), alpha.numpy()[..., None]
    region = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = np.where(alpha > 0, region + alpha * (face - region), region)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def paste_faces(photo: Image.Image, faces, *, mask: MaskConfig = MaskConfig()) -> Image.Image:
    """Paste several edited faces, [(edited, AlignedFace), ...], one after the other."""
    out = photo.convert("RGB")
    for edited, aligned in faces:
        out = paste_back(out, edited, aligned, mask=mask)
    return out


def mask_in_photo(size: tuple[int, int], aligned: AlignedFace, *, mask: MaskConfig = MaskConfig()) -> np.ndarray:
    """The face mask as pasted into a photo of `size` (W, H): [H,W] float64 in [0,1] (8-bit steps)."""
    white = Image.new("RGB", (aligned.size,) * 2, "white")
    return np.asarray(paste_back(Image.new("RGB", size), white, aligned, mask=mask), dtype=np.float64)[..., 0] / 255


def masked_psnr(a: Image.Image, b: Image.Image, aligned: AlignedFace, *, mask: MaskConfig = MaskConfig()) -> float:
    """PSNR (dB, 8-bit) between two photos over the face region of `aligned`, weighted by its mask."""
    weight = mask_in_photo(a.size, aligned, mask=mask)
    err = np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean(-1)
    mse = float((err * weight).sum() / max(weight.sum(), 1e-12))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
