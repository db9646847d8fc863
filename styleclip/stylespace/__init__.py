"""Style space S: channel statistics, channel relevance (fs3), text direction delta_t and delta_s
(STYLECLIP_SPEC 0.2, 3.2-3.5). Everything reads the generator's layer table `g.layers`.

Relevance ("fs3") follows the official protocol (SingleChannel.py): for each evaluated channel c and each of
the first `n_images` sampled codes, two images with s_c = mu_c -/+ 5 sigma_c, CLIP-embed, normalise, difference,
normalise, average over images, normalise. One deliberate difference: the official code CLIP-encodes the uint8
image through CLIP's standard preprocessing (bicubic 224 resize, centre crop); we use
`ClipEncoder.encode_image` (the float image, box-filter resize, CLIP normalisation).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from styleclip.util.checks import file_tensors, finite_tensors, read_npy, reading
from styleclip.errors import CheckpointError, InputError, StyleClipError, summarize
from styleclip.util.outputs import Outputs, write_atomic
from styleclip.types import ProgressFn

PERTURBATION = 5.0  # official: mu_c -/+ 5 sigma_c
AUTO_BETAS = tuple(round(0.10 + 0.01 * i, 2) for i in range(20))  # 0.10 ... 0.29
STATS_SAMPLES = 100_000
STATS_TRUNCATION = 0.7
STATS_SEED = 5  # upstream GetCode.py: RandomState(5) (our z stream differs: torch, not numpy)
RELEVANCE_IMAGES = 100
UPSTREAM_MAX_RESOLUTION = 128


def _report(progress: ProgressFn | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


# ---- layers ---------------------------------------------------------------------------------------
def conv_layers(g) -> list:
    """The non-toRGB entries of the layer table (17 at 1024)."""
    return [layer for layer in g.layers if layer.kind == "conv"]


def relevance_layers(g, *, all_layers: bool = False, max_resolution: int = UPSTREAM_MAX_RESOLUTION) -> list[int]:
    """Style-layer indices whose channels get relevance rows: upstream evaluates conv layers up to 128 px
    (5376 channels at 1024); `all_layers` takes every conv layer (6048)."""
    return [layer.index for layer in conv_layers(g) if all_layers or layer.resolution <= max_resolution]


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
        _report(progress, *run.progress())
    total = run.finish()
    count = float(total["count"])
    dev = g.w_avg.device
    meta = {"n": n, "truncation": truncation, "seed": seed, "generator": generator_fingerprint(g)}
    return StyleStats([total[f"mean_{k}"].float().to(dev) for k in range(len(g.layers))],
                      [(total[f"m2_{k}"] / count).sqrt().float().to(dev) for k in range(len(g.layers))], meta)


def distributed_main() -> bool:
    """True on the process that writes files: rank 0 under torchrun, the only process otherwise."""
    from styleclip.util.distributed import world

    return world().is_main


# ---- fingerprints and cache -----------------------------------------------------------------------
def _fingerprint(module: torch.nn.Module, extra: str = "") -> str:
    """A cheap content key: shapes and a strided sample of every parameter and buffer."""
    h = hashlib.sha256(extra.encode())
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        flat = t.detach().reshape(-1)
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def generator_fingerprint(g) -> str:
    return _fingerprint(g, json.dumps(g.config.to_dict(), sort_keys=True))


def clip_fingerprint(clip) -> str:
    return _fingerprint(clip.model, f"{clip.name}|{clip.official_input}")


def identity_fingerprint(identity) -> str:
    return _fingerprint(identity, type(identity).__name__)


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "assets" / "stylespace"  # precomputed for the embedded models


def cache_path(kind: str, key: str, suffix: str) -> Path:
    """Where the cache entry `kind`-`key` is written (the user cache)."""
    from styleclip.store import registry as pretrained

    return pretrained.cache_dir() / "stylespace" / f"{kind}-{key}{suffix}"


def shipped_or(path: Path) -> Path:
    """The copy of a cache entry shipped in the package (same name) if there is one, else `path`."""
    shipped = SHIPPED_DIR / path.name
    return shipped if shipped.is_file() else path


def shipped_relevance(g, clip) -> Path | None:
    """A relevance file shipped for exactly this generator and CLIP (whatever its settings; they are in its
    JSON), exact before fast; None if there is none."""
    found = sorted(SHIPPED_DIR.glob(f"fs3-{generator_fingerprint(g)}-{clip_fingerprint(clip)}-*.npy"))
    meta = {p: Path(str(p) + ".json") for p in found}
    exact = [p for p in found if meta[p].is_file() and json.loads(meta[p].read_text()).get("method") == "exact"]
    return (exact or found or [None])[0]


def stats_cache_path(g, **kwargs) -> Path:
    """Cache entry of the style statistics of this generator with these `compute_stats` settings."""
    key = f"{generator_fingerprint(g)}-n{kwargs.get('n', STATS_SAMPLES)}-" \
          f"psi{kwargs.get('truncation', STATS_TRUNCATION)}-seed{kwargs.get('seed', STATS_SEED)}"
    return cache_path("stats", key, ".safetensors")


# ---- prepared generators (`styleclip prepare`) ------------------------------------------------------
PREPARED_RECORD = "prepared.json"


def _prepared_index(fingerprint: str) -> Path:
    from styleclip.store import registry as pretrained

    return pretrained.cache_dir() / "prepared" / f"{fingerprint}.json"


def register_prepared(g, folder: str | Path, record: dict) -> Path:
    """Write `folder/prepared.json` (the record, with the generator's fingerprint) and point the user cache's
    index at it, so later runs of this generator find its statistics and relevance."""
    folder = Path(folder).resolve()
    record = dict(record, generator=generator_fingerprint(g), config=g.config.to_dict())
    (folder / PREPARED_RECORD).write_text(json.dumps(record, indent=1))
    index = _prepared_index(record["generator"])
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps({"folder": str(folder)}))
    return folder / PREPARED_RECORD


def find_prepared(g) -> tuple[Path, dict] | None:
    """(folder, record) of this generator's `styleclip prepare` run, if one is registered and still there."""
    index = _prepared_index(generator_fingerprint(g))
    try:
        folder = Path(json.loads(index.read_text())["folder"])
        record = json.loads((folder / PREPARED_RECORD).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (folder, record) if record.get("generator") == generator_fingerprint(g) else None


def _prepared_file(g, name: str, **must_match) -> Path | None:
    found = find_prepared(g)
    if found is None or not found[1].get(name):
        return None
    folder, record = found
    if any(record.get(k) != v for k, v in must_match.items()):
        return None
    path = folder / record[name]
    return path if path.is_file() else None


def load_or_compute_stats(g, path: str | Path | None = None, **kwargs) -> StyleStats:
    """Stats from `path`, else from the cache (keyed by generator and settings) or the generator's `prepare`
    folder, else computed and cached."""
    if path is not None:
        return StyleStats.load(path, g)
    cached = stats_cache_path(g, **kwargs)
    if shipped_or(cached).is_file():
        return StyleStats.load(shipped_or(cached), g)
    prepared = _prepared_file(g, "stats", **{f"stats_{k}": v for k, v in kwargs.items()})
    if prepared is not None:
        return StyleStats.load(prepared, g)
    stats = compute_stats(g, checkpoint=cached.with_name(cached.stem + ".partial"), **kwargs)
    if distributed_main():
        stats.save(cached)
    return stats


# ---- relevance ------------------------------------------------------------------------------------
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


def _add(acc: dict, part: dict) -> None:
    for name, t in part.items():
        acc[name] += t


class ShardedSums:
    """Partial results of a run split into `n_chunks` chunks of work, shared out among the ranks of a torchrun
    world (round robin over the chunks not done yet) and resumable.

    Each rank folds its chunks' results into float64 arrays with `merge` (default: a sum) and, with a
    `folder`, saves them with the list of its finished chunks to `folder/rank<r>.npz` after every chunk
    (written aside and renamed). A rerun, with any number of ranks, skips every chunk found in the folder's
    files; `finish()` (all ranks) merges the files, checks that every chunk is there exactly once and
    removes the folder. For several nodes the folder must be on a file system all of them see. Without a
    folder nothing is shared out: every rank computes every chunk (same result, no speed-up).
    """

    def __init__(self, folder: str | Path | None, key: dict, arrays: dict[str, torch.Tensor], n_chunks: int,
                 *, merge=_add):
        from styleclip.util import distributed

        self.folder, self.key, self.merge, self.n_chunks = (Path(folder) if folder else None), key, merge, n_chunks
        self.world = distributed.world() if self.folder is not None else distributed.World()
        self.zero = {k: v.clone() for k, v in arrays.items()}
        self.arrays, self.chunks = arrays, []
        done: list[int] = []
        if self.world.is_main and self.folder is not None and self.folder.is_dir():
            for f in sorted(self.folder.glob("rank*.npz")):
                part = self._read(f)
                if part is None:  # another run's (other settings) or unreadable: start those chunks again
                    f.unlink()
                else:
                    done += part[1]
        if self.world.size > 1:
            done = distributed.broadcast_object(sorted(done))
        own = self._read(self._file(self.world.rank)) if self.folder is not None else None
        if own is not None:
            self.arrays.update(own[0])
            self.chunks = list(own[1])
        self.done_before = len(done)
        taken = set(done)
        self.mine = distributed.shard([j for j in range(n_chunks) if j not in taken], self.world)
        self._finished_here = 0

    def _file(self, rank: int) -> Path:
        return self.folder / f"rank{rank}.npz"

    def _read(self, path: Path):
        """(arrays, chunk ids) of a rank file of this run, None if absent, unreadable or another run's."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if json.loads(str(z["key"])) != self.key:
                    return None
                arrays = {k: torch.from_numpy(z[f"a_{k}"].copy()) for k in self.zero}
                return arrays, [int(c) for c in z["chunks"]]
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return None

    def is_done(self, chunk: int) -> bool:
        return chunk in self.chunks

    def add(self, chunk: int, part: dict[str, torch.Tensor]) -> None:
        """Fold chunk `chunk`'s result in and save (so an interrupted run resumes after it)."""
        self.merge(self.arrays, {k: v.detach().double().cpu() for k, v in part.items()})
        self.chunks.append(chunk)
        self._finished_here += 1
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._file(self.world.rank)
        tmp = path.with_name(f".{path.stem}.tmp.npz")  # not matched by rank*.npz
        np.savez(tmp, key=json.dumps(self.key), chunks=np.asarray(self.chunks, dtype=np.int64),
                 **{f"a_{k}": v.numpy() for k, v in self.arrays.items()})
        tmp.replace(path)

    def progress(self) -> tuple[int, int]:
        """(done, total) as this rank sees it: chunks done before it started plus its own, of those plus its
        share (in a world of one: of all chunks)."""
        return self.done_before + self._finished_here, self.done_before + len(self.mine)

    def finish(self) -> dict[str, torch.Tensor]:
        """All ranks: wait for every rank, merge every rank file (or, alone and without a folder, the arrays)."""
        from styleclip.util import distributed

        if self.folder is None:
            total, seen = self.arrays, sorted(self.chunks)
        else:
            distributed.barrier()
            total, seen = {k: v.clone() for k, v in self.zero.items()}, []
            for f in sorted(self.folder.glob("rank*.npz"), key=lambda p: int(p.stem[4:])):
                part = self._read(f)
                if part is not None:
                    self.merge(total, part[0])
                    seen += part[1]
            seen.sort()
        if seen != list(range(self.n_chunks)):
            missing = sorted(set(range(self.n_chunks)) - set(seen))
            raise StyleClipError(f"{self.folder}: chunks missing or doubled after the run ({len(seen)} found, "
                                 f"{len(missing)} missing); with several nodes the checkpoint folder must be "
                                 "shared by all of them")
        if self.folder is not None:
            distributed.barrier()  # every rank has read the files
        if self.world.is_main and self.folder is not None:
            for f in list(self.folder.glob("rank*.npz")) + list(self.folder.glob(".rank*.tmp.npz")):
                f.unlink()
            try:
                self.folder.rmdir()
            except OSError:
                pass
        return total


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
    _report(progress, *run.progress())
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
        _report(progress, *run.progress())
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
    _report(progress, *run.progress())
    for i in run.mine:
        cols = _jacobian_columns(g, clip, [s[i:i + 1] for s in styles], layers, stop, d, cotangent_batch)
        run.add(i, {str(k): F.normalize(jac * stats.std[k].double().cpu().unsqueeze(1), dim=-1)
                    for k, jac in cols.items()})
        _report(progress, *run.progress())
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


def relevance_cache_path(g, clip, method: str = "exact", **settings) -> Path:
    """Cache entry of the relevance for this generator, CLIP, method and non-default settings."""
    desc = json.dumps({"method": method, **settings}, sort_keys=True, default=str)
    key = f"{generator_fingerprint(g)}-{clip_fingerprint(clip)}-{hashlib.sha256(desc.encode()).hexdigest()[:8]}"
    return cache_path("fs3", key, ".npy")


def computes_when_missing(g) -> bool:
    """Whether an engine computes a missing relevance itself: only for small generators (<= 64 px, minutes);
    at FFHQ's size it takes hours, so there a missing one is an error naming how to get it."""
    return g.config.size <= 64


def load_or_compute_relevance(g, clip, stats: StyleStats, path: str | Path | None = None, *,
                              method: str = "exact", compute: bool = True, progress: ProgressFn | None = None,
                              **settings) -> Relevance:
    """Relevance from `path`, else from the cache (keyed by generator, CLIP, method and settings), else
    computed (resumable through a checkpoint next to the cache entry) and cached."""
    if path is not None:
        return Relevance.load(path, g)
    if method not in ("exact", "fast"):
        raise StyleClipError(f"relevance method must be 'exact' or 'fast', got {method!r}")
    cached = relevance_cache_path(g, clip, method, **settings)
    if shipped_or(cached).is_file():
        return Relevance.load(shipped_or(cached), g)
    shipped = shipped_relevance(g, clip) if not settings else None
    if shipped is not None:
        return Relevance.load(shipped, g)
    prepared = None if settings else _prepared_file(g, "relevance", clip_fingerprint=clip_fingerprint(clip))
    if prepared is not None:
        return Relevance.load(prepared, g)
    if not compute:
        raise StyleClipError("no channel relevance (fs3) for this generator and CLIP: pass an fs3.npy "
                             "(the official FFHQ file works) or compute one with `styleclip relevance` "
                             "(hours at 1024; --fast for the estimator)")
    fn = compute_relevance if method == "exact" else estimate_relevance
    rel = fn(g, clip, stats, checkpoint=cached.with_name(cached.stem + ".partial"), progress=progress,
             **settings)
    if distributed_main():
        rel.save(cached)
    return rel


# ---- directions -----------------------------------------------------------------------------------
def text_direction(clip, neutral: str, target: str, templates: Sequence[str] | None = None) -> torch.Tensor:
    """delta_t [D]: unit(t_target - t_neutral), each text averaged over the 79 ImageNet templates (SPEC 3.4)."""
    from styleclip.encoders.clip import imagenet_templates

    if templates is None:
        templates = imagenet_templates()
    t = clip.encode_text([neutral, target], templates)
    diff = t[1] - t[0]
    if diff.norm() < 1e-8:
        raise InputError(f"neutral and target text give the same embedding ({neutral!r} -> {target!r})")
    return F.normalize(diff, dim=-1)


def channel_scores(relevance: Relevance, delta_t: torch.Tensor) -> torch.Tensor:
    """r = fs3 . delta_t, one cosine per relevance row."""
    return relevance.fs3 @ delta_t.to(relevance.fs3)


def count_kept(relevance: Relevance, delta_t: torch.Tensor, beta: float) -> int:
    return int((channel_scores(relevance, delta_t).abs() >= beta).sum())


def auto_beta(relevance: Relevance, delta_t: torch.Tensor, *, k: int = 20, betas: Sequence[float] = AUTO_BETAS,
              fallback: float = 0.1) -> float:
    """The GUI's auto-beta: the largest beta in {0.10, ..., 0.29} keeping more than k channels, else 0.1."""
    r = channel_scores(relevance, delta_t).abs()
    for beta in sorted(betas, reverse=True):
        if int((r >= beta).sum()) > k:
            return float(beta)
    return fallback


def decorrelated_scores(relevance: Relevance, delta_t: torch.Tensor, ridge: float) -> torch.Tensor:
    """Channel scores a = fs3 (fs3^T fs3 + ridge * lambda_max I)^-1 delta_t, scaled to max|fs3 . delta_t|: the
    ridge least-squares weights whose combined image change sum_c a_c fs3_c points along delta_t. The paper's
    r = fs3 . delta_t is the limit ridge -> inf; there many channels sharing one CLIP direction (a smile's) all
    score high and crowd out the other part of a compound prompt ("smiling ... with a mohawk")."""
    u = relevance.fs3.double()
    gram = u.T @ u
    lam = float(ridge) * float(torch.linalg.eigvalsh(gram)[-1])
    a = u @ torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device),
                               delta_t.to(u))
    r = u @ delta_t.to(u)
    return (a * (r.abs().max() / a.abs().max().clamp_min(1e-30))).to(relevance.fs3.dtype)


def delta_s(g, relevance: Relevance, stats: StyleStats, delta_t: torch.Tensor, beta: float, *,
            ridge: float | None = None, identity_cost: torch.Tensor | None = None,
            identity_damping: float | None = None) -> tuple[list[torch.Tensor], int]:
    """(delta_s per entry of g.layers, channels kept) as SPEC 3.5: r = fs3 . delta_t; |r| < beta -> 0;
    r / max|r|; times the channel std; zero on toRGB layers and on layers without relevance.

    Extensions (off by default, the paper's direction then bit for bit): `ridge` scores the kept channels by
    `decorrelated_scores` instead of r; `identity_cost` [rows] (styleclip.stylespace.identity_cost) with
    `identity_damping` q0 divides each score by (1 + q_c / q0) before the normalisation."""
    r = channel_scores(relevance, delta_t)
    keep = r.abs() >= beta
    kept = int(keep.sum())
    if kept == 0:
        raise InputError(f"beta too high: beta = {beta:g} keeps no channel; only {kept} channels have "
                         f"|r| >= {beta:g} (largest |r| is {float(r.abs().max()):.3f}); lower beta")
    if ridge is not None:
        r = decorrelated_scores(relevance, delta_t, ridge)
    r = torch.where(keep, r, torch.zeros_like(r))
    if identity_damping is not None and identity_cost is not None:
        r = r / (1 + identity_cost.to(r) / identity_damping)
    if float(r.abs().max()) == 0:
        raise InputError("the direction scores no kept channel (every kept score is zero); lower beta")
    r = r / r.abs().max()
    out = [stats.std[layer.index].new_zeros(layer.channels) for layer in g.layers]
    row = 0
    for k in relevance.layers:
        c = g.layers[k].channels
        out[k] = r[row: row + c].to(stats.std[k]) * stats.std[k]
        row += c
    return out, kept


def apply_direction(styles: list[torch.Tensor], direction: list[torch.Tensor], alpha: float) -> list[torch.Tensor]:
    """s + alpha * delta_s on every layer (direction [C_i] broadcast over the batch)."""
    return [s + alpha * ds.to(s).unsqueeze(0) for s, ds in zip(styles, direction)]


class EtaPrinter:
    """A progress callback printing done/total, rate and ETA at most every `every` seconds (to `write`)."""

    def __init__(self, label: str, write=print, every: float = 2.0):
        self.label, self.write, self.every = label, write, every
        self.t0, self.last, self.start_done = time.perf_counter(), 0.0, None

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.start_done is None:
            self.start_done = done
        if done < total and now - self.last < self.every:
            return
        self.last = now
        rate = (done - self.start_done) / max(now - self.t0, 1e-9)
        eta = (total - done) / rate if rate > 0 else math.inf
        eta_s = "?" if math.isinf(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
        self.write(f"{self.label}: {done}/{total} ({100 * done / max(total, 1):.1f}%), ETA {eta_s}")
