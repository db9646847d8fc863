"""Photos of the toy world: renders scaled, rotated and placed on a larger, non-square, noisy scene, with
the render squares ("frames") recorded. They are the "real photos" of the toy benchmarks: no generator
made them.

The toy generator draws faces in the render's own frame, so the alignment of a toy face is its frame.
MTCNN finds no cartoon faces, so toy photos carry their frames; `frame_landmarks` turns a frame into
five pseudo-landmarks for which the FFHQ recipe (`faces.ffhq_quad`) cuts exactly that frame, and the
rest of `faces.py` (cropping, padding, resampling) is shared with real photos.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from styleclip.toy.render import Attributes, Identity, render

# pseudo-landmarks in the unit render frame: eyes 2a apart at (0.5, 0.5 - 0.1 b), mouth corners b below,
# with max(2a, 1.8 b) = 1/2, so ffhq_quad() of them is the unit square (see faces.ffhq_quad); 2a = 0.205 is
# the renderer's mean eye distance (they sit at height 0.5)
_A, _B = 0.205, 0.5 / 1.8
UNIT_LANDMARKS = np.array([[0.5 - _A / 2, 0.5 - 0.1 * _B], [0.5 + _A / 2, 0.5 - 0.1 * _B], [0.5, 0.5 + 0.4 * _B],
                           [0.5 - _A / 2, 0.5 + 0.9 * _B], [0.5 + _A / 2, 0.5 + 0.9 * _B]])


@dataclass(frozen=True)
class ToyPhoto:
    """A toy photo and where its faces are: `frames` [K,4,2] are each render square's corners in index
    coordinates (top-left, bottom-left, bottom-right, top-right: the PIL QUAD order of faces.AlignedFace)."""

    image: Image.Image
    frames: np.ndarray


def render_frame(centre, side: float, angle_deg: float) -> np.ndarray:
    """Corners (index coordinates, QUAD order) of a square of `side` px centred at `centre` (continuous
    coordinates), turned `angle_deg` counter-clockwise as seen on screen."""
    a = np.deg2rad(angle_deg)
    ux = np.array([np.cos(a), -np.sin(a)]) * side  # the frame's x axis (y points down on screen)
    uy = np.array([np.sin(a), np.cos(a)]) * side
    o = np.asarray(centre, dtype=np.float64) - 0.5 * ux - 0.5 * uy
    return np.stack([o, o + uy, o + ux + uy, o + ux]) - 0.5


def make_photo(faces: list[tuple[Identity, Attributes, tuple[float, float], float, float]],
               size: tuple[int, int] = (320, 240), *, seed: int = 0) -> ToyPhoto:
    """A textured scene of `size` (W, H) with toy faces drawn in: each (identity, attributes, centre (x, y)
    continuous px, side px, angle degrees). The scene is noisy so that "unchanged" is a real check."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([160 + 50 * xx / w, 105 + 30 * yy / h, 70 + 15 * np.sin(xx / 17.0)], -1)
    scene = Image.fromarray(np.uint8(np.clip(base + rng.normal(0, 6, base.shape), 0, 255)))
    frames = []
    for identity, attributes, centre, side, angle in faces:
        face = Image.fromarray(render(identity, attributes, size=max(8, round(side))))
        rgba = face.convert("RGBA").rotate(angle, resample=Image.BICUBIC, expand=True)
        cx, cy = centre
        scene.paste(rgba, (round(cx - rgba.width / 2), round(cy - rgba.height / 2)), rgba)
        c = (round(cx - rgba.width / 2) + rgba.width / 2, round(cy - rgba.height / 2) + rgba.height / 2)
        frames.append(render_frame(c, face.width, angle))
    return ToyPhoto(scene, np.asarray(frames).reshape(-1, 4, 2))


def frame_landmarks(frame) -> np.ndarray:
    """Pseudo-landmarks [5,2] (index coordinates) for a render frame [4,2]: `faces.ffhq_quad` of them is the
    frame, so `faces.align_face(photo, frame_landmarks(frame), size=64)` cuts the render square back out."""
    f = np.asarray(frame, dtype=np.float64) + 0.5
    origin, ux, uy = f[0], f[3] - f[0], f[1] - f[0]
    return origin + UNIT_LANDMARKS[:, :1] * ux + UNIT_LANDMARKS[:, 1:] * uy - 0.5


class FrameDetector:
    """A detector that knows where the faces are: answers `detect(image, landmarks=True)` like
    facenet-pytorch's MTCNN with the recorded frames of a ToyPhoto (for benchmarks and tests)."""

    def __init__(self, frames):
        self.frames = np.asarray(frames, dtype=np.float64).reshape(-1, 4, 2)

    def detect(self, image, landmarks: bool = True):
        if not len(self.frames):
            return None, None, None
        boxes = np.concatenate([self.frames.min(1), self.frames.max(1)], 1)
        points = np.stack([frame_landmarks(f) for f in self.frames])
        return boxes, np.ones(len(boxes)), points
