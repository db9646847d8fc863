"""Style statistics: per-channel mean and std of S over seeded, truncated w (STYLECLIP_SPEC 3.2), and the
seeded w stream that the relevance images are drawn from too."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from styleclip.errors import CheckpointError, InputError, StyleClipError, summarize
from styleclip.stylespace.sharded import ShardedSums
from styleclip.types import ProgressFn
from styleclip.util.checks import file_tensors, finite_tensors, reading
from styleclip.util.fingerprint import generator_fingerprint
from styleclip.util.outputs import write_atomic
from styleclip.util.progress import report

STATS_SAMPLES = 100_000
STATS_TRUNCATION = 0.7
STATS_SEED = 5  # upstream GetCode.py: RandomState(5) (our z stream differs: torch, not numpy)


# ---- sampling -------------------------------------------------------------------------------------
def _w_stream(g, n: int, *, truncation: float, seed: int, batch: int = 1000, keep=None):
    """Yield n truncated w in batches; z is drawn in fixed blocks of 1000 from one seeded stream, so the first
    k rows never depend on n or batch. With `keep(j)` false, batch j is skipped (its z still drawn; None
    yielded), so a rank maps only its own batches of the common stream."""
    gen = torch.Generator().manual_seed(seed)
    dim, dev = g.config.style_dim, g.w_avg.device
    block = 1000
    per = max(1, batch // block)
    for j, start in enumerate(range(0, n, per * block)):
        z = torch.cat([torch.randn(block, dim, generator=gen) for _ in range(per)])[: n - start]
        if keep is not None and not keep(j):
            yield None
            continue
        with torch.no_grad():
            yield g.mapping(z.to(dev, g.w_avg.dtype), truncation)


def sample_w(g, n: int, *, truncation: float = STATS_TRUNCATION, seed: int = STATS_SEED) -> torch.Tensor:
    """The first n truncated w [n, style_dim] of the seeded stream (the relevance images are its first rows)."""
    return torch.cat(list(_w_stream(g, n, truncation=truncation, seed=seed)))


def styles_from_w(g, w: torch.Tensor) -> list[torch.Tensor]:
    """S of tiled w (every W+ row equal) through the affine layers only."""
    return g.styles(g.broadcast(w))


# ---- statistics -----------------------------------------------------------------------------------
@dataclass
class StyleStats:
    """Per-channel mean and std (ddof 0) of S, one [C_i] tensor per entry of `g.layers`."""

    mean: list[torch.Tensor]
    std: list[torch.Tensor]
    meta: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        tensors = {f"mean_{i}": m.detach().cpu().float().contiguous() for i, m in enumerate(self.mean)}
        tensors.update({f"std_{i}": s.detach().cpu().float().contiguous() for i, s in enumerate(self.std)})
        finite_tensors(tensors, "style statistics")
        return write_atomic(path, lambda tmp: save_file(tensors, str(tmp),
                                                        metadata={"styleclip": json.dumps(self.meta)}))

    @classmethod
    def load(cls, path: str | Path, g=None) -> "StyleStats":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise StyleClipError(f"{path}: no such style statistics file")
        with reading(path, "style statistics file"):
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("styleclip", "{}"))
                n = sum(1 for k in f.keys() if k.startswith("mean_"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        if not isinstance(meta, dict):
            raise CheckpointError(f"{path}: style statistics metadata is not a JSON object")
        names = [f"{kind}_{i}" for kind in ("mean", "std") for i in range(n)]
        if n == 0 or sorted(names) != sorted(tensors):
            raise CheckpointError(f"{path}: not a style statistics file (expected mean_0.. and std_0.. tensors, "
                                  f"found {summarize(sorted(tensors))})")
        file_tensors(tensors, str(path), what="the statistics")
        mean = [tensors[f"mean_{i}"].float().reshape(-1) for i in range(n)]
        std = [tensors[f"std_{i}"].float().reshape(-1) for i in range(n)]
        if any(m.numel() != s.numel() for m, s in zip(mean, std)) or any((s < 0).any() for s in std):
            raise CheckpointError(f"{path}: style statistics are inconsistent (mean/std sizes differ or a "
                                  "negative std)")
        stats = cls(mean, std, meta)
        if g is not None:
            stats.check(g)
            stats = stats.to(g.w_avg.device)
        return stats

    def check(self, g) -> None:
        shapes = [m.numel() for m in self.mean]
        want = [layer.channels for layer in g.layers]
        if shapes != want:
            raise StyleClipError(f"style statistics do not fit this generator: {len(shapes)} layers "
                                 f"{shapes[:4]}... vs {len(want)} layers {want[:4]}...")

    def to(self, device) -> "StyleStats":
        return StyleStats([m.to(device) for m in self.mean], [s.to(device) for s in self.std], self.meta)


def _chan_merge(acc: dict, part: dict) -> None:
    """Fold the (count, mean_k, m2_k) of one set of samples into `acc` (Chan et al., float64, in place)."""
    na, nb = float(acc["count"]), float(part["count"])
    tot = na + nb
    if nb == 0:
        return
    for name in part:
        if name.startswith("mean_"):
            m2 = "m2_" + name[5:]
            delta = part[name] - acc[name]
            acc[name] += delta * nb / tot
            acc[m2] += part[m2] + delta.square() * na * nb / tot
    acc["count"] += nb


@torch.no_grad()
def compute_stats(g, *, n: int = STATS_SAMPLES, truncation: float = STATS_TRUNCATION, seed: int = STATS_SEED,
                  batch: int = 10_000, checkpoint: str | Path | None = None,
                  progress: ProgressFn | None = None) -> StyleStats:
    """Mean and std of S over n seeded, truncated w (TF GetCode.py: every W+ row truncated), affine layers
    only. Batches are merged in float64 (Chan et al.), so memory stays at one batch.

    Under torchrun the batches are shared out among the ranks (round robin); with `checkpoint` (a folder, shared
    by all ranks) each rank saves its partial statistics after every batch and a rerun resumes."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise InputError(f"style statistics need at least 2 samples, got {n!r}")
    n_chunks = len(range(0, n, max(1, batch // 1000) * 1000))
    arrays = {"count": torch.zeros((), dtype=torch.float64)}
    for layer in g.layers:
        arrays[f"mean_{layer.index}"] = torch.zeros(layer.channels, dtype=torch.float64)
        arrays[f"m2_{layer.index}"] = torch.zeros(layer.channels, dtype=torch.float64)
    key = {"kind": "stats", "n": n, "truncation": truncation, "seed": seed, "batch": batch,
           "generator": generator_fingerprint(g)}
    run = ShardedSums(checkpoint, key, arrays, n_chunks, merge=_chan_merge)
    mine = set(run.mine)
    for j, w in enumerate(_w_stream(g, n, truncation=truncation, seed=seed, batch=batch, keep=mine.__contains__)):
        if w is None or run.is_done(j):
            continue
        part = {"count": torch.tensor(float(w.shape[0]), dtype=torch.float64)}
        for k, s in enumerate(styles_from_w(g, w)):
            s = s.double().cpu()
            part[f"mean_{k}"] = s.mean(0)
            part[f"m2_{k}"] = (s - part[f"mean_{k}"]).square().sum(0)
        run.add(j, part)
        report(progress, *run.progress())
    total = run.finish()
    count = float(total["count"])
    dev = g.w_avg.device
    meta = {"n": n, "truncation": truncation, "seed": seed, "generator": generator_fingerprint(g)}
    return StyleStats([total[f"mean_{k}"].float().to(dev) for k in range(len(g.layers))],
                      [(total[f"m2_{k}"] / count).sqrt().float().to(dev) for k in range(len(g.layers))], meta)

