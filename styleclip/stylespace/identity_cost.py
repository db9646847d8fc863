"""Identity cost of style channels: how much moving one channel changes who the face is.

q_c = mean over sampled faces and both signs of 1 - cos(id(s + sign * P * sigma_c e_c), id(s)), with P = 3
channel standard deviations and `id` the model set's identity net (ArcFace at FFHQ). Computed once per
generator and identity net, for the relevance layers (same rows as fs3). Global directions divide a channel's
share of delta_s by (1 + q_c / q0) (`GlobalDirectionsConfig.identity_damping` = q0): the few channels that carry
most of an edit's identity change (on toy-faces, a handful for a smile) are held back while
the rest of the direction is kept.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from styleclip.stylespace.relevance import Relevance, relevance_layers, save_rows
from styleclip.stylespace.stats import STATS_SEED, STATS_TRUNCATION, StyleStats, sample_w, styles_from_w
from styleclip.util.checks import finite_tensors, read_npy, reading
from styleclip.errors import CheckpointError, StyleClipError
from styleclip.types import ProgressFn
from styleclip.util.fingerprint import generator_fingerprint, identity_fingerprint

PERTURBATION = 3.0  # channel standard deviations, about the largest shift a global edit gives one channel
IMAGES = 32


@dataclass
class IdentityCost:
    """cost: [rows] >= 0 for the channels of `layers` (rows in layer/channel order, as fs3)."""

    cost: torch.Tensor
    layers: tuple[int, ...]
    meta: dict = field(default_factory=dict)

    def rows_for(self, relevance: Relevance, g) -> torch.Tensor:
        """The cost rows of the relevance's channels (a relevance of fewer layers, e.g. an official fs3 prefix,
        takes the rows of its layers)."""
        start, row = {}, 0
        for k in self.layers:
            start[k] = row
            row += g.layers[k].channels
        missing = [k for k in relevance.layers if k not in start]
        if missing or row != self.cost.shape[0]:
            raise CheckpointError(f"the identity cost covers layers {list(self.layers)}, the relevance "
                                  f"{list(relevance.layers)} (no cost for {missing}): computed for another generator "
                                  "or layer set?")
        return torch.cat([self.cost[start[k]: start[k] + g.layers[k].channels] for k in relevance.layers])

    def save(self, path: str | Path) -> Path:
        """`path` (.npy) plus `path`.json with the settings."""
        return save_rows(path, self.cost, self.layers, self.meta, "identity cost")

    @classmethod
    def load(cls, path: str | Path, g) -> "IdentityCost":
        path = Path(path)
        if not path.is_file():
            raise StyleClipError(f"{path}: no such identity cost file")
        cost = read_npy(path, "identity cost file")
        finite_tensors(cost, f"{path}: the identity cost", error=CheckpointError)
        meta_file = Path(str(path) + ".json")
        with reading(meta_file, "identity cost metadata (.json)"):
            meta = json.loads(meta_file.read_text())
            if not isinstance(meta, dict):
                raise CheckpointError(f"{meta_file}: not a JSON object")
            layers = tuple(int(k) for k in meta.get("layers", []))
        if cost.ndim != 1 or not layers or any(not 0 <= k < len(g.layers) for k in layers) or \
                sum(g.layers[k].channels for k in layers) != cost.shape[0] or bool((cost < 0).any()):
            raise CheckpointError(f"{path}: not an identity cost of this generator ({list(cost.shape)} values, "
                                  f"layers {list(layers)})")
        return cls(cost.float().to(g.w_avg.device), layers, meta)


@torch.no_grad()
def compute_identity_cost(g, identity, stats: StyleStats, *, n_images: int = IMAGES,
                          perturbation: float = PERTURBATION, layers=None, seed: int = STATS_SEED,
                          truncation: float = STATS_TRUNCATION, image_batch: int = 8, batch_size: int | None = None,
                          progress: ProgressFn | None = None) -> IdentityCost:
    """q_c for the relevance layers (see the module docstring). Per image batch the synthesis below a layer runs
    once; only the layers from the perturbed one up run per channel, `batch_size` images per forward."""
    layers = list(relevance_layers(g) if layers is None else layers)
    if batch_size is None:  # 256 at 64 px, fewer for larger generators (memory)
        batch_size = max(2, 16 * (256 // g.config.size) ** 2)
    styles = styles_from_w(g, sample_w(g, n_images, truncation=truncation, seed=seed))
    out = {k: torch.zeros(g.layers[k].channels, dtype=torch.float64) for k in layers}
    total, done = len(layers) * n_images, 0
    for i0 in range(0, n_images, image_batch):
        i1 = min(n_images, i0 + image_batch)
        batch = [s[i0:i1] for s in styles]
        e0 = identity.embed(g.synthesis_from_styles(batch))
        for k in layers:
            c_all, n = g.layers[k].channels, i1 - i0
            state = g.synthesis_range([s if q < k else None for q, s in enumerate(batch)], 0, k) if k > 0 else None
            pairs = [(c, i, sign) for c in range(c_all) for i in range(n) for sign in (-1.0, 1.0)]
            for p0 in range(0, len(pairs), batch_size):
                part = pairs[p0:p0 + batch_size]
                ch = torch.tensor([c for c, _, _ in part], device=e0.device)
                im = torch.tensor([i for _, i, _ in part], device=e0.device)
                sign = torch.tensor([s for _, _, s in part], device=e0.device)
                suffix = [s[im] if q >= k else None for q, s in enumerate(batch)]
                rows = torch.arange(len(part), device=e0.device)
                suffix[k] = suffix[k].clone()
                suffix[k][rows, ch] += sign * perturbation * stats.std[k][ch].to(suffix[k])
                st = None if state is None else (state[0][im], None if state[1] is None else state[1][im])
                _, img = g.synthesis_range(suffix, k, None, st)
                drop = 1 - (identity.embed(img) * e0[im]).sum(-1)
                out[k].index_add_(0, ch.cpu(), drop.double().cpu())
            done += n
            if progress is not None:
                progress(done, total)
    cost = torch.cat([out[k] / (2 * n_images) for k in layers]).float().clamp_min(0)
    meta = {"n_images": n_images, "perturbation": perturbation, "seed": seed, "truncation": truncation,
            "layers": layers, "generator": generator_fingerprint(g), "identity": identity_fingerprint(identity)}
    return IdentityCost(cost.to(g.w_avg.device), tuple(layers), meta)
