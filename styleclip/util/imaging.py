"""Images: tensors in [-1,1] NCHW <-> PIL / uint8, grids, GIFs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from styleclip.errors import InputError


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """img [N,3,H,W] or [3,H,W] in [-1,1] -> uint8 array [N,H,W,3] (or [H,W,3])."""
    x = img.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def to_pil(img: torch.Tensor) -> Image.Image | list[Image.Image]:
    """One image [3,H,W] -> PIL image; a batch [N,3,H,W] -> list of PIL images."""
    arr = to_uint8(img)
    if arr.ndim == 3:
        return Image.fromarray(arr)
    return [Image.fromarray(a) for a in arr]


def from_pil(image: Image.Image, size: int | None = None) -> torch.Tensor:
    """PIL image -> [1,3,H,W] in [-1,1] (RGB; resized with Lanczos to size x size when given)."""
    image = image.convert("RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float()
    return (x / 127.5 - 1).unsqueeze(0)


def grid(images: Sequence[torch.Tensor] | torch.Tensor, *, ncols: int | None = None, pad: int = 2) -> Image.Image:
    """Tile images ([3,H,W] each, or a batch) into one PIL image, row-major, white padding."""
    if isinstance(images, torch.Tensor):
        images = list(images) if images.ndim == 4 else [images]
    arrs = [to_uint8(t) for t in images]
    n = len(arrs)
    ncols = ncols or n
    nrows = (n + ncols - 1) // ncols
    h, w = arrs[0].shape[:2]
    canvas = np.full((nrows * h + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad, 3), 255, np.uint8)
    for i, a in enumerate(arrs):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y:y + h, x:x + w] = a
    return Image.fromarray(canvas)


def save_gif(frames: Sequence[Image.Image], path: str | Path, *, duration_ms: int = 80) -> Path:
    """Write an animated GIF that loops forever."""
    path = Path(path)
    frames = list(frames)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return path


def upscale_for_viewing(image: Image.Image, min_size: int = 256) -> Image.Image:
    """Nearest-neighbour enlarge tiny images (debug models are 32 px) so people can see them."""
    factor = max(1, -(-min_size // max(image.size)))
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def label_grid(image: Image.Image, col_labels: Sequence[str], row_labels: Sequence[str], *,
               margin: int = 18) -> Image.Image:
    """A grid image (equal tiles, as from `grid`) with a label above each column and left of each row."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    draw0 = ImageDraw.Draw(image)
    left = max([int(draw0.textlength(t, font=font)) for t in row_labels] + [0]) + 8
    out = Image.new("RGB", (image.width + left, image.height + margin), "white")
    out.paste(image, (left, margin))
    draw = ImageDraw.Draw(out)
    cw, rh = image.width / max(1, len(col_labels)), image.height / max(1, len(row_labels))
    for i, t in enumerate(col_labels):
        draw.text((left + (i + 0.5) * cw - draw.textlength(t, font=font) / 2, 3), t, fill="black", font=font)
    for i, t in enumerate(row_labels):
        draw.text((4, margin + (i + 0.5) * rh - 5), t, fill="black", font=font)
    return out


def load_reference_image(path: str | Path, size: int) -> torch.Tensor:
    """A reference image file -> img [1,3,size,size] in [-1,1] (centre-cropped square, resized)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"target image {path} does not exist")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side))
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"target image {path}: not a readable image ({' '.join(str(e).split())[:120]})") from None
    return from_pil(im, size)
