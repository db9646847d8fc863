"""Real photos: safe loading, face detection (MTCNN from facenet-pytorch) and FFHQ-style alignment.

Coordinates: landmarks and boxes are in pixel-index coordinates (pixel i is centred on i, as detectors
report them). Internally the alignment works in continuous coordinates (index + 0.5, pixel i covering
[i, i+1]), which is what PIL's transforms use, so pre-shrinking, cropping and padding are exact.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from styleclip.errors import InputError

MAX_SIDE = 4096  # photos are downscaled to this long side right after reading
MIN_SIDE = 20  # MTCNN (min_face_size 20) scans no scale of a smaller image
DETECT_SIDE = 2048  # MTCNN runs on a copy no larger than this
MIN_PROBABILITY = 0.9


# ---- loading ---------------------------------------------------------------------------------------
def load_image(path: str | Path, *, max_side: int = MAX_SIDE) -> Image.Image:
    """Read a photo as an RGB PIL image: EXIF orientation applied, alpha composited on white, grayscale and
    16-bit images mapped to 8-bit RGB, long side at most `max_side`.

    Images above PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) are read through the JPEG
    decoder's DCT scaling (Image.draft) when they are JPEGs and refused otherwise. Every failure is an
    InputError with a one-line message.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        img = _open_large_jpeg(path, max_side, e)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image (or a format Pillow cannot read)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # PIL's parsers raise all of these on bad headers
        raise InputError(f"{path}: cannot read ({' '.join(str(e).split())[:200]})") from None
    with img:
        if min(img.size) < MIN_SIDE:
            raise InputError(f"{path}: image is {img.size[0]}x{img.size[1]} pixels; a photo for face detection "
                             f"needs at least {MIN_SIDE} pixels on each side")
        if img.format == "JPEG":
            img.draft("RGB", (max_side, max_side))  # free downscale by 1/2, 1/4 or 1/8 while decoding
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise InputError(f"{path}: truncated or corrupt image ({' '.join(str(e).split())})") from None
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block must not stop us: keep the stored orientation
            pass
        rgb = _to_rgb(img, path)
    if max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.LANCZOS)
    return rgb


def _open_large_jpeg(path: Path, max_side: int, error: Exception) -> Image.Image:
    from PIL import JpegImagePlugin

    limit = Image.MAX_IMAGE_PIXELS
    try:
        img = JpegImagePlugin.JpegImageFile(str(path))  # header only; opening the plugin skips the bomb check
    except Exception:
        raise InputError(f"{path}: image too large to read safely ({' '.join(str(error).split())}); "
                         f"downscale it first") from None
    w, h = img.size
    # the smallest DCT scale (1/1 .. 1/8) that fits the pixel limit, then further while above max_side
    k = next((k for k in (1, 2, 4, 8) if limit is None or math.ceil(w / k) * math.ceil(h / k) <= limit), 8)
    while k < 8 and max(w, h) / (2 * k) >= max_side:
        k *= 2
    img.draft("RGB", (max(1, w // k), max(1, h // k)))
    if limit is not None and img.size[0] * img.size[1] > limit:
        img.close()
        raise InputError(f"{path}: image too large to read safely ({w}x{h} pixels, even at 1/8 scale above "
                         f"{limit} pixels); downscale it first")
    return img


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) if arr.size else 0.0
        if mode.startswith("I;16") or (mode == "I" and top > 255):
            arr = arr / 257.0  # 16-bit -> 8-bit
        elif mode == "F" and top <= 1.0:
            arr = arr * 255.0
        gray = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise InputError(f"{path}: unsupported image mode {mode!r} ({e})") from None


# ---- detection -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Face:
    """One detected face: box (x1, y1, x2, y2), detector probability, five landmarks [5,2] as (x, y):
    left eye, right eye, nose, left mouth corner, right mouth corner (left/right as seen in the image)."""

    index: int
    box: tuple[float, float, float, float]
    probability: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@functools.lru_cache(maxsize=None)
def _mtcnn(device: str = "cpu"):
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device=device).eval()


def detect_faces(image: Image.Image, *, min_probability: float = MIN_PROBABILITY, detector=None,
                 detect_side: int = DETECT_SIDE) -> list[Face]:
    """All faces in an RGB image, largest first (index 0 is the default face). `detector`: an MTCNN
    (keep_all=True) to use instead of the built-in CPU one. An empty list when there is none."""
    detector = detector or _mtcnn()
    image = image.convert("RGB")
    scale = 1.0
    small = image
    if max(image.size) > detect_side:
        scale = max(image.size) / detect_side
        small = image.resize((max(1, round(image.width / scale)), max(1, round(image.height / scale))),
                             Image.BILINEAR)
        scale = image.width / small.width
    boxes, probs, points = detector.detect(small, landmarks=True)
    if boxes is None or len(boxes) == 0:
        return []
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    # back to the full image (continuous coordinates scale exactly)
    boxes = boxes * scale
    points = (points + 0.5) * scale - 0.5
    found = [(b, p, lm) for b, p, lm in zip(boxes, probs, points) if p >= min_probability]
    found.sort(key=lambda f: -(f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
    return [Face(i, tuple(float(v) for v in b), float(p), lm) for i, (b, p, lm) in enumerate(found)]


def select_face(faces: list[Face], face_index: int | None = None, *, source: str = "the image") -> Face:
    """The face to use: the largest (index 0) by default. A clear error for none or a bad index."""
    if not faces:
        raise InputError(f"no face found in {source}")
    index = 0 if face_index is None else face_index
    if not 0 <= index < len(faces):
        raise InputError(f"face index {index} is out of range: {len(faces)} face(s) found in {source} "
                         f"(indices 0..{len(faces) - 1}; see `styleclip faces`)")
    return faces[index]


# ---- FFHQ alignment --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlignedFace:
    """An aligned crop and how it was cut: `quad` [4,2] are the source-image (index) coordinates of the
    crop's corners: top-left, bottom-left, bottom-right, top-right (PIL QUAD order)."""

    image: Image.Image
    quad: np.ndarray
    face: Face | None = None

    @property
    def size(self) -> int:
        return self.image.width

    def to_crop(self, points) -> np.ndarray:
        """Source-image points [K,2] (index coordinates) -> their coordinates in the aligned crop."""
        return source_to_crop(points, self.quad, self.size)


def ffhq_quad(landmarks) -> np.ndarray:
    """The oriented square of the FFHQ recipe from five landmarks (eyes, nose, mouth corners) or from the
    four points eye_left, eye_right, mouth_left, mouth_right: corners [4,2] in PIL QUAD order."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape == (5, 2):
        lm = lm[[0, 1, 3, 4]]
    if lm.shape != (4, 2):
        raise ValueError(f"landmarks must have shape [5,2] or [4,2], got {list(lm.shape)}")
    eye_left, eye_right, mouth_left, mouth_right = lm
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    norm = np.hypot(*x)
    if not np.isfinite(norm) or norm < 1e-6:
        raise InputError("degenerate face landmarks: cannot align")
    x = x / norm
    x = x * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def source_to_crop(points, quad: np.ndarray, size: int) -> np.ndarray:
    """Map source index coordinates into a size x size crop cut along `quad` (a square)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    q = np.asarray(quad, dtype=np.float64)
    origin = q[0]
    ax, ay = q[3] - q[0], q[1] - q[0]  # crop's x and y axes, each one crop side long
    t = p - origin  # the same in continuous coordinates (both +0.5)
    u = t @ ax / (ax @ ax)
    v = t @ ay / (ay @ ay)
    return np.stack([u * size - 0.5, v * size - 0.5], axis=1)


def align_face(image: Image.Image, landmarks, *, size: int = 1024, supersample: int = 4,
               enable_padding: bool = True, face: Face | None = None) -> AlignedFace:
    """Cut the FFHQ-aligned square (see `ffhq_quad`) out of `image` at size x size.

    As in the FFHQ dataset script: pre-shrink the photo by an integer factor when the face is much larger
    than the output, crop around the quad, reflect-pad (with a blurred, median-faded border) where the quad
    leaves the photo, transform the quad at `supersample` x the output size and Lanczos-downscale (anti-aliasing).
    """
    if size < 8:
        raise ValueError(f"aligned size must be at least 8, got {size}")
    img = image.convert("RGB")
    quad = ffhq_quad(landmarks)
    q = quad + 0.5  # continuous coordinates
    qsize = float(np.hypot(*(q[3] - q[0])))

    shrink = int(math.floor(qsize / size * 0.5))
    if shrink > 1:
        img = img.reduce(shrink)  # box filter: continuous coordinates scale by exactly 1/shrink
        q = q / shrink
        qsize = qsize / shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(q[:, 0].min())), int(np.floor(q[:, 1].min())),
            int(np.ceil(q[:, 0].max())), int(np.ceil(q[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, img.width), min(crop[3] + border, img.height))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise InputError("the face lies outside the image: cannot align")
    if crop[2] - crop[0] < img.width or crop[3] - crop[1] < img.height:
        img = img.crop(crop)
        q = q - [crop[0], crop[1]]

    pad = (int(np.floor(q[:, 0].min())), int(np.floor(q[:, 1].min())),
           int(np.ceil(q[:, 0].max())), int(np.ceil(q[:, 1].max())))
    pad = [max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - img.width + border, 0), max(pad[3] - img.height + border, 0)]
    if enable_padding and max(pad) > border - 4:
        pad = [max(p, int(np.rint(qsize * 0.3))) for p in pad]
        img = _reflect_pad(img, pad, blur=qsize * 0.02)
        q = q + [pad[0], pad[1]]

    transform_size = size * max(1, int(supersample))
    out = img.transform((transform_size, transform_size), Image.QUAD, tuple(q.flatten()), Image.BILINEAR)
    if transform_size != size:
        out = out.resize((size, size), Image.LANCZOS)
    return AlignedFace(out, quad, face)


def _reflect_pad(img: Image.Image, pad, *, blur: float) -> Image.Image:
    """Reflect-pad by (left, top, right, bottom), blur the padding progressively and fade it toward the
    median colour, so the synthetic border does not look like a second face."""
    left, top, right, bottom = (max(int(p), 1) for p in pad)
    arr = np.pad(np.asarray(img, dtype=np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w, _ = arr.shape
    yy = np.arange(h, dtype=np.float32)[:, None, None]
    xx = np.arange(w, dtype=np.float32)[None, :, None]
    mask = np.maximum(1.0 - np.minimum(xx / left, (w - 1 - xx) / right),
                      1.0 - np.minimum(yy / top, (h - 1 - yy) / bottom))
    blurred = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255))).filter(ImageFilter.GaussianBlur(blur))
    arr += (np.asarray(blurred, dtype=np.float32) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")


MAX_CROP = 2048


def _check_size(size) -> None:
    from styleclip.util.checks import integer

    integer(size, "crop size", 16, MAX_CROP)


def aligned_faces(path: str | Path, *, size: int = 1024, detector=None) -> tuple[list[Face], list[AlignedFace]]:
    """Every face of a photo with its aligned crop, largest first."""
    _check_size(size)
    image = load_image(path)
    faces = detect_faces(image, detector=detector)
    return faces, [align_face(image, f.landmarks, size=size, face=f) for f in faces]


def align_photo(path: str | Path, *, size: int = 1024, face_index: int | None = None,
                detector=None) -> AlignedFace:
    """Load a photo, pick a face (the largest by default) and return its FFHQ-aligned crop."""
    _check_size(size)
    image = load_image(path)
    face = select_face(detect_faces(image, detector=detector), face_index, source=str(path))
    return align_face(image, face.landmarks, size=size, face=face)


def generator_makes_faces(g, *, n: int = 8, seed: int = 0, detect_side: int = 256) -> tuple[bool, int]:
    """(True when MTCNN finds a face in at least half of n sampled images, how many it found faces in): tells a
    face generator (identity loss meaningful) from cars, cats, churches."""
    import torch

    from styleclip.util.imaging import to_pil

    z = torch.randn(n, g.config.style_dim, generator=torch.Generator().manual_seed(seed)).to(g.w_avg.device)
    with torch.no_grad():
        images = to_pil(g.synthesis(g.broadcast(g.mapping(z, 0.7))))
    hits = sum(bool(detect_faces(im.resize((detect_side, detect_side), Image.BICUBIC))) for im in images)
    return 2 * hits >= n, hits
