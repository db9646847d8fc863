"""Channel relevance fs3 (STYLECLIP_SPEC 3.3): how each style channel moves the CLIP image embedding.

Relevance ("fs3") follows the official protocol (SingleChannel.py): for each evaluated channel c and each of
the first `n_images` sampled codes, two images with s_c = mu_c -/+ 5 sigma_c, CLIP-embed, normalise, difference,
normalise, average over images, normalise. One deliberate difference: the official code CLIP-encodes the uint8
image through CLIP's standard preprocessing (bicubic 224 resize, centre crop); we use
`ClipEncoder.encode_image` (the float image, box-filter resize, CLIP normalisation).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from styleclip.errors import CheckpointError, StyleClipError
from styleclip.stylespace.sharded import ShardedSums
from styleclip.stylespace.stats import STATS_SEED, STATS_TRUNCATION, StyleStats, sample_w, styles_from_w
from styleclip.types import ProgressFn
from styleclip.util.checks import finite_tensors, read_npy, reading
from styleclip.util.fingerprint import clip_fingerprint, generator_fingerprint
from styleclip.util.outputs import Outputs
from styleclip.util.progress import report

PERTURBATION = 5.0  # official: mu_c -/+ 5 sigma_c
RELEVANCE_IMAGES = 100
UPSTREAM_MAX_RESOLUTION = 128


def conv_layers(g) -> list:
    """The non-toRGB entries of the layer table (17 at 1024)."""
    return [layer for layer in g.layers if layer.kind == "conv"]


def relevance_layers(g, *, all_layers: bool = False, max_resolution: int = UPSTREAM_MAX_RESOLUTION) -> list[int]:
    """Style-layer indices whose channels get relevance rows: upstream evaluates conv layers up to 128 px
    (5376 channels at 1024); `all_layers` takes every conv layer (6048)."""
    return [layer.index for layer in conv_layers(g) if all_layers or layer.resolution <= max_resolution]


@dataclass
class Relevance:
    """fs3: unit rows [n_rows, D] for the channels of `layers` (style-layer indices, in order; rows in
    layer/channel order, as the official fs3.npy). Channels of other layers have no relevance (zero)."""

    fs3: torch.Tensor
    layers: tuple[int, ...]
    meta: dict = field(default_factory=dict)

    def per_layer(self, g) -> dict[int, torch.Tensor]:
        out, row = {}, 0
        for k in self.layers:
            c = g.layers[k].channels
            out[k] = self.fs3[row: row + c]
            row += c
        if row != self.fs3.shape[0]:
            raise StyleClipError(f"relevance has {self.fs3.shape[0]} rows, its layers need {row}")
        return out

    def save(self, path: str | Path) -> Path:
        """`path` (.npy, interchangeable with the official fs3.npy) plus `path`.json with metadata."""
        return save_rows(path, self.fs3, self.layers, self.meta, "channel relevance")

    @classmethod
    def load(cls, path: str | Path, g) -> "Relevance":
        """Our .npy (with its .json) or an official fs3.npy: rows are matched to the generator's conv layers
        in order (5376 = conv layers up to 128 px at 1024, 6048 = all); missing later layers stay zero."""
        path = Path(path)
        if not path.is_file():
            raise StyleClipError(f"{path}: no such relevance file")
        fs3 = read_npy(path, "relevance file")
        if fs3.ndim != 2 or 0 in fs3.shape:
            raise CheckpointError(f"{path}: relevance must be a non-empty 2-D array [channels, clip_dim], got "
                                  f"{list(fs3.shape)}")
        finite_tensors(fs3, f"{path}: the relevance", error=CheckpointError)
        meta_file = Path(str(path) + ".json")
        with reading(meta_file, "relevance metadata (.json)"):
            meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {"source": str(path)}
            if not isinstance(meta, dict):
                raise CheckpointError(f"{meta_file}: not a JSON object")
            layers = [int(k) for k in meta.get("layers", [])]
        if not layers or any(not 0 <= k < len(g.layers) for k in layers) or \
                sum(g.layers[k].channels for k in layers) != fs3.shape[0]:
            layers, rows = [], 0  # official file: a prefix of the conv layers
            for layer in conv_layers(g):
                if rows == fs3.shape[0]:
                    break
                layers.append(layer.index)
                rows += layer.channels
            if rows != fs3.shape[0]:
                sizes = np.cumsum([layer.channels for layer in conv_layers(g)]).tolist()
                raise StyleClipError(f"{path}: {fs3.shape[0]} rows do not match this generator's conv layers "
                                     f"(possible row counts: {sizes})")
        return cls(fs3.to(g.w_avg.device), tuple(layers), meta)

    def full(self, g) -> list[torch.Tensor | None]:
        """Per entry of `g.layers`: its [C_i, D] rows, zeros for conv layers without relevance, None for toRGB."""
        rows = self.per_layer(g)
        d = self.fs3.shape[1]
        return [rows.get(layer.index, self.fs3.new_zeros(layer.channels, d)) if layer.kind == "conv" else None
                for layer in g.layers]


def save_rows(path: str | Path, rows: torch.Tensor, layers, meta: dict, what: str) -> Path:
    """Per-channel rows of `layers` as `path` (.npy, float32) plus `path`.json (meta, layers, rows), together."""
    path = Path(path)
    finite_tensors(rows, what)
    meta = dict(meta, layers=list(layers), rows=int(rows.shape[0]))
    with Outputs() as out:
        out.write(path, lambda tmp: np.save(tmp, rows.detach().cpu().float().numpy()))
        out.write(Path(str(path) + ".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    return path


def _images(g, n_images: int, seed: int, truncation: float) -> list[torch.Tensor]:
    return styles_from_w(g, sample_w(g, n_images, truncation=truncation, seed=seed))


def _normalize_rows(acc: torch.Tensor) -> torch.Tensor:
    return F.normalize(acc, dim=-1).float()


def _chunks(n: int, size: int):
    return [(i, min(n, i + size)) for i in range(0, n, size)]


@torch.no_grad()
def compute_relevance(g, clip, stats: StyleStats, *, n_images: int = RELEVANCE_IMAGES,
                      layers: Sequence[int] | None = None, batch_size: int | None = None, image_batch: int = 10,
                      channel_block: int = 64, seed: int = STATS_SEED, truncation: float = STATS_TRUNCATION,
                      checkpoint: str | Path | None = None, progress: ProgressFn | None = None) -> Relevance:
    """The official fs3 protocol, exactly, with shared work.

    Chunks of work are (layer, block of `channel_block` channels), over all images; per image batch the
    synthesis below the perturbed layer runs once, and only the layers from the perturbed one up run per
    channel, `batch_size` image pairs per forward. Under torchrun the chunks are shared out among the ranks;
    every channel is computed by one rank in the same order, so the result does not depend on the number of
    ranks. With `checkpoint` (a folder; see ShardedSums) finished chunks are saved and a rerun resumes.
    """
    layers = list(relevance_layers(g) if layers is None else layers)
    if batch_size is None:  # 16 pairs per forward at 256 px, more for smaller generators (less overhead)
        batch_size = max(4, min(image_batch * channel_block, 16 * (256 // g.config.size) ** 2))
    styles = _images(g, n_images, seed, truncation)
    dev = styles[0].device
    acc = {str(k): torch.zeros(g.layers[k].channels, clip_dim(clip), dtype=torch.float64) for k in layers}
    chunks = [(k, cb) for k in layers for cb in _chunks(g.layers[k].channels, channel_block)]
    key = {"method": "exact", "n_images": n_images, "layers": layers, "seed": seed, "truncation": truncation,
           "image_batch": image_batch, "channel_block": channel_block,
           "generator": generator_fingerprint(g), "clip": clip_fingerprint(clip)}
    run = ShardedSums(checkpoint, key, acc, len(chunks))
    report(progress, *run.progress())
    for j in run.mine:
        k, (c0, c1) = chunks[j]
        rows = torch.zeros(g.layers[k].channels, clip_dim(clip), dtype=torch.float64)
        for i0, i1 in _chunks(n_images, image_batch):
            below = [s[i0:i1] if q < k else None for q, s in enumerate(styles)]
            prefix = g.synthesis_range(below, 0, k) if k > 0 else (
                g.input.input.expand(i1 - i0, -1, -1, -1), None)
            rows[c0:c1] += _pairs_contribution(g, clip, styles, stats, k, (i0, i1), (c0, c1), prefix,
                                               batch_size).cpu()
        run.add(j, {str(k): rows})
        report(progress, *run.progress())
    acc = run.finish()
    fs3 = torch.cat([_normalize_rows(acc[str(k)]) for k in layers]).to(dev)
    meta = dict(key, method="exact", clip_input="ClipEncoder.encode_image (box filter), not CLIP's uint8 preprocess")
    return Relevance(fs3, tuple(layers), meta)


def _pairs_contribution(g, clip, styles, stats, k, images, channels, prefix, batch_size) -> torch.Tensor:
    """Sum over the images of normalise(e(mu+5sigma) - e(mu-5sigma)) for channels [c0, c1) of layer k."""
    (i0, i1), (c0, c1) = images, channels
    x_pre, img_pre = prefix
    n_img = i1 - i0
    pairs = [(c, i) for c in range(c0, c1) for i in range(n_img)]
    out = torch.zeros(c1 - c0, clip_dim(clip), dtype=torch.float64, device=x_pre.device)
    lo = stats.mean[k] - PERTURBATION * stats.std[k]
    hi = stats.mean[k] + PERTURBATION * stats.std[k]
    for p0, p1 in _chunks(len(pairs), batch_size):
        ch = torch.tensor([c for c, _ in pairs[p0:p1]], device=x_pre.device)
        im = torch.tensor([i for _, i in pairs[p0:p1]], device=x_pre.device)
        idx = torch.cat([im, im])  # first all "-", then all "+"
        sl = styles[k][i0:i1][idx].clone()
        rows = torch.arange(idx.numel(), device=idx.device)
        chs = torch.cat([ch, ch])
        sl[rows, chs] = torch.cat([lo[ch], hi[ch]]).to(sl.dtype)
        suffix = [s[i0:i1][idx] if j > k else None for j, s in enumerate(styles)]
        suffix[k] = sl
        state = (x_pre[idx], None if img_pre is None else img_pre[idx])
        _, img = g.synthesis_range(suffix, k, None, state)
        e = clip.encode_image(img).double()
        n = ch.numel()
        d = F.normalize(e[n:] - e[:n], dim=-1)
        out.index_add_(0, ch - c0, d)
    return out


def clip_dim(clip) -> int:
    proj = getattr(clip.model, "text_projection", None)
    if isinstance(proj, torch.Tensor):
        return proj.shape[-1]
    return int(getattr(clip.model, "embed_dim", None) or clip.encode_text("a").shape[-1])


def compute_relevance_naive(g, clip, stats: StyleStats, *, n_images: int, layers: Sequence[int] | None = None,
                            seed: int = STATS_SEED, truncation: float = STATS_TRUNCATION) -> Relevance:
    """Reference implementation: one full synthesis per image pair, nothing shared (slow; for tests)."""
    layers = list(relevance_layers(g) if layers is None else layers)
    styles = _images(g, n_images, seed, truncation)
    rows = []
    with torch.no_grad():
        for k in layers:
            for c in range(g.layers[k].channels):
                acc = 0
                for i in range(n_images):
                    embs = []
                    for sign in (-1, 1):
                        s = [t[i:i + 1].clone() for t in styles]
                        s[k][0, c] = stats.mean[k][c] + sign * PERTURBATION * stats.std[k][c]
                        embs.append(clip.encode_image(g.synthesis_from_styles(s)).double())
                    acc = acc + F.normalize(embs[1] - embs[0], dim=-1)
                rows.append(F.normalize(acc, dim=-1).float())
    return Relevance(torch.cat(rows), tuple(layers), {"method": "naive"})


def estimate_relevance(g, clip, stats: StyleStats, *, n_images: int = RELEVANCE_IMAGES,
                       layers: Sequence[int] | None = None, proxy_resolution: int | None = -1,
                       cotangent_batch: int = 16, seed: int = STATS_SEED, truncation: float = STATS_TRUNCATION,
                       checkpoint: str | Path | None = None, progress: ProgressFn | None = None) -> Relevance:
    """Fast estimator: linearise the protocol. For image i, the pair difference of channel c is about
    2 * 5 sigma_c * J_i[:, c] with J_i = d(unit CLIP embedding)/d(S); so row_c ~ normalise(sum_i
    normalise(J_i[:, c])). J_i comes from D reverse passes (one per CLIP dimension, batched with vmap),
    shared by every channel, instead of 2 forward passes per channel.

    `proxy_resolution`: stop the synthesis at the toRGB of that resolution and CLIP-embed that partial image
    (StyleGAN2's skip output is a complete low-resolution image); -1 = the highest evaluated layer's
    resolution (128 px at 1024: every evaluated channel still acts on it), None = full synthesis.
    """
    layers = list(relevance_layers(g) if layers is None else layers)
    if proxy_resolution == -1:
        proxy_resolution = max(g.layers[k].resolution for k in layers)
    stop = len(g.layers) if proxy_resolution is None else next(
        (layer.index + 1 for layer in g.layers if layer.kind == "torgb" and layer.resolution >= proxy_resolution),
        len(g.layers))
    if any(k >= stop for k in layers):
        raise ValueError(f"proxy resolution {proxy_resolution} is below an evaluated layer")
    styles = _images(g, n_images, seed, truncation)
    d = clip_dim(clip)
    acc = {str(k): torch.zeros(g.layers[k].channels, d, dtype=torch.float64) for k in layers}
    key = {"method": "fast", "n_images": n_images, "layers": layers, "seed": seed, "truncation": truncation,
           "proxy_resolution": proxy_resolution, "generator": generator_fingerprint(g),
           "clip": clip_fingerprint(clip)}
    run = ShardedSums(checkpoint, key, acc, n_images)  # a chunk per image
    report(progress, *run.progress())
    for i in run.mine:
        cols = _jacobian_columns(g, clip, [s[i:i + 1] for s in styles], layers, stop, d, cotangent_batch)
        run.add(i, {str(k): F.normalize(jac * stats.std[k].double().cpu().unsqueeze(1), dim=-1)
                    for k, jac in cols.items()})
        report(progress, *run.progress())
    acc = run.finish()
    fs3 = torch.cat([_normalize_rows(acc[str(k)]) for k in layers]).to(styles[0].device)
    return Relevance(fs3, tuple(layers), dict(key, clip_input="ClipEncoder.encode_image (box filter)"))


def _jacobian_columns(g, clip, styles, layers, stop, d, cotangent_batch) -> dict[int, torch.Tensor]:
    """{layer k: [C_k, D] derivative of the unit embedding of one image w.r.t. each channel of S_k}."""
    with torch.enable_grad():
        leaves = {k: styles[k].detach().clone().requires_grad_(True) for k in layers}
        s = [leaves.get(j, t) if j < stop else None for j, t in enumerate(styles)]
        _, img = g.synthesis_range(s, 0, stop)
        e = clip.encode_image(img)[0]  # [D]
        eye = torch.eye(e.shape[0], device=e.device, dtype=e.dtype)[:d]  # d < D only for timing a part
        cols = {k: [] for k in layers}
        for c0, c1 in _chunks(d, cotangent_batch):
            grads = torch.autograd.grad(e, [leaves[k] for k in layers], grad_outputs=eye[c0:c1],
                                        retain_graph=c1 < d, is_grads_batched=True)
            for k, gk in zip(layers, grads):
                cols[k].append(gk[:, 0].double().cpu())  # [chunk, C_k]
    return {k: torch.cat(v).t() for k, v in cols.items()}

def computes_when_missing(g) -> bool:
    """Whether an engine computes a missing relevance itself: only for small generators (<= 64 px, minutes);
    at FFHQ's size it takes hours, so there a missing one is an error naming how to get it."""
    return g.config.size <= 64

