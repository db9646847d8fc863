"""On-the-fly toy-face batches: render, label, caption, augment.

Every batch is a pure function of (seed, step): the numpy rng is `default_rng([seed, step])` and the
augmentation torch.Generator is seeded from the same pair, so a resumed run sees exactly the batches an
uninterrupted run would have seen (no sampler state to checkpoint). Images are float [N,3,H,W] in [-1,1].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from styleclip.toy.render import (ATTRIBUTE_VALUES, Attributes, Identity, caption, render, sample_attributes, sample_identity)

ATTRIBUTES = tuple(ATTRIBUTE_VALUES)  # label order used by every head / table


@dataclass
class Batch:
    images: torch.Tensor  # [N,3,H,W] in [-1,1]
    labels: dict[str, torch.Tensor]  # attribute -> long [N] (index into ATTRIBUTE_VALUES[attribute])
    captions: list[str]
    identities: list[Identity] = field(repr=False)
    attributes: list[Attributes] = field(repr=False)
    identity_ids: torch.Tensor | None = None  # long [N]: which identity of the batch (identity batches only)


def label_index(attributes: Attributes) -> dict[str, int]:
    return {a: ATTRIBUTE_VALUES[a].index(getattr(attributes, a)) for a in ATTRIBUTES}


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images).copy()).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1


def _labels(atts: list[Attributes]) -> dict[str, torch.Tensor]:
    idx = [label_index(a) for a in atts]
    return {a: torch.tensor([i[a] for i in idx], dtype=torch.long) for a in ATTRIBUTES}


def _rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(step)])


def _torch_gen(seed: int, step: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(np.random.default_rng([int(seed), int(step), 7]).integers(2**62)))
    return g


def sample_batch(seed: int, step: int, n: int, *, size: int = 64, augment: bool = False) -> Batch:
    """`n` random faces (random identity and attributes) with labels and captions."""
    rng = _rng(seed, step)
    idns = [sample_identity(rng) for _ in range(n)]
    atts = [sample_attributes(rng) for _ in range(n)]
    caps = [caption(a, rng) for a in atts]
    x = to_tensor([render(i, a, size=size) for i, a in zip(idns, atts)])
    if augment:
        x = augment_images(x, _torch_gen(seed, step))
    return Batch(x, _labels(atts), caps, idns, atts)


def identity_batch(seed: int, step: int, n_identities: int, views: int = 2, *, size: int = 64,
                   augment: bool = True) -> Batch:
    """`n_identities` identities, each rendered `views` times with independent random attributes."""
    rng = _rng(seed, step)
    idns, atts, ids = [], [], []
    for k in range(n_identities):
        idn = sample_identity(rng)
        for _ in range(views):
            idns.append(idn)
            atts.append(sample_attributes(rng))
            ids.append(k)
    caps = [caption(a, rng) for a in atts]
    x = to_tensor([render(i, a, size=size) for i, a in zip(idns, atts)])
    if augment:
        x = augment_images(x, _torch_gen(seed, step))
    return Batch(x, _labels(atts), caps, idns, atts, torch.tensor(ids, dtype=torch.long))


def augment_images(x: torch.Tensor, gen: torch.Generator, *, max_shift: int = 3, blur_p: float = 0.3,
                   noise_max: float = 0.06, brightness: float = 0.08, contrast: float = 0.1) -> torch.Tensor:
    """Small shifts (reflect-padded crop), random Gaussian blur, mild brightness/contrast jitter (no hue
    change: colours are labels) and Gaussian noise. Deterministic given `gen`."""
    n, c, h, w = x.shape
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    # shift
    pad = F.pad(x, (max_shift,) * 4, mode="reflect")
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = dy[:, None] + torch.arange(h)
    cols = dx[:, None] + torch.arange(w)
    x = pad[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    # blur (separable 5-tap Gaussian, sigma in [0.4, 1.2]) on a random subset, as grouped convolutions
    sigma = 0.4 + 0.8 * u(n)
    do_blur = u(n) < blur_p
    t = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-t[None] ** 2 / (2 * sigma[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [n*c, 5]
    xb = F.pad(x.reshape(1, n * c, h, w), (2, 2, 2, 2), mode="reflect")
    xb = F.conv2d(xb, k.view(n * c, 1, 1, 5), groups=n * c)
    xb = F.conv2d(xb, k.view(n * c, 1, 5, 1), groups=n * c).view(n, c, h, w)
    x = torch.where(do_blur.view(n, 1, 1, 1), xb, x)
    # brightness / contrast around the per-image mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    cfac = 1 + contrast * (2 * u(n, 1, 1, 1) - 1)
    bshift = brightness * (2 * u(n, 1, 1, 1) - 1)
    x = (x - mean) * cfac + mean + bshift
    # noise
    x = x + noise_max * u(n, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    return x.clamp(-1, 1)


_EVAL_CACHE: dict[tuple, Batch] = {}


def eval_set(n: int = 512, seed: int = 1_000_003, *, size: int = 64) -> Batch:
    """A fixed held-out set (its seed is never used for training batches), without augmentation."""
    key = (n, seed, size)
    if key not in _EVAL_CACHE:
        _EVAL_CACHE[key] = sample_batch(seed, 0, n, size=size, augment=False)
    return _EVAL_CACHE[key]


def verification_pairs(n_pairs: int = 512, seed: int = 1_000_033, *, size: int = 64
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Held-out verification pairs (a [P,3,H,W], b [P,3,H,W], same [P] bool): half share the identity
    (attributes re-sampled independently), half are two different identities."""
    rng = _rng(seed, 0)
    a, b, same = [], [], []
    for k in range(n_pairs):
        idn = sample_identity(rng)
        s = k % 2 == 0
        other = idn if s else sample_identity(rng)
        a.append(render(idn, sample_attributes(rng), size=size))
        b.append(render(other, sample_attributes(rng), size=size))
        same.append(s)
    return to_tensor(a), to_tensor(b), torch.tensor(same)
