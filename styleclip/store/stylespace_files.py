"""Where the S-space files of a generator are found: a given path, the copies shipped in the package, the user
cache (`store.cache`, keyed by fingerprints and settings) or a `styleclip prepare` folder; what is missing is
computed (`styleclip.stylespace`) and cached."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from styleclip.errors import StyleClipError
from styleclip.store.cache import cache_path, partial_path
from styleclip.store.prepared import prepared_file
from styleclip.stylespace.identity_cost import IdentityCost, compute_identity_cost
from styleclip.stylespace.relevance import (Relevance, compute_relevance, computes_when_missing,
                                            estimate_relevance)
from styleclip.stylespace.stats import STATS_SAMPLES, STATS_SEED, STATS_TRUNCATION, StyleStats, compute_stats
from styleclip.types import ProgressFn
from styleclip.util.fingerprint import clip_fingerprint, generator_fingerprint, identity_fingerprint

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "assets" / "stylespace"  # precomputed for the embedded models


def distributed_main() -> bool:
    """True on the process that writes files: rank 0 under torchrun, the only process otherwise."""
    from styleclip.util.distributed import world

    return world().is_main


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


# ---- cache entries ----------------------------------------------------------------------------------------
def stats_cache_path(g, **kwargs) -> Path:
    """Cache entry of the style statistics of this generator with these `compute_stats` settings."""
    return cache_path("stats", generator_fingerprint(g), f"n{kwargs.get('n', STATS_SAMPLES)}",
                      f"psi{kwargs.get('truncation', STATS_TRUNCATION)}", f"seed{kwargs.get('seed', STATS_SEED)}",
                      suffix=".safetensors")


def relevance_cache_path(g, clip, method: str = "exact", **settings) -> Path:
    """Cache entry of the relevance for this generator, CLIP, method and non-default settings."""
    desc = json.dumps({"method": method, **settings}, sort_keys=True, default=str)
    return cache_path("fs3", generator_fingerprint(g), clip_fingerprint(clip),
                      hashlib.sha256(desc.encode()).hexdigest()[:8], suffix=".npy")


def identity_cost_cache_path(g, identity) -> Path:
    """Cache entry of the identity cost of this generator's channels under this identity net."""
    return cache_path("idcost", generator_fingerprint(g), identity_fingerprint(identity), suffix=".npy")


# ---- find or compute --------------------------------------------------------------------------------------
def load_or_compute_stats(g, path: str | Path | None = None, **kwargs) -> StyleStats:
    """Stats from `path`, else from the cache (keyed by generator and settings) or the generator's `prepare`
    folder, else computed and cached."""
    if path is not None:
        return StyleStats.load(path, g)
    cached = stats_cache_path(g, **kwargs)
    if shipped_or(cached).is_file():
        return StyleStats.load(shipped_or(cached), g)
    prepared = prepared_file(g, "stats", **{f"stats_{k}": v for k, v in kwargs.items()})
    if prepared is not None:
        return StyleStats.load(prepared, g)
    stats = compute_stats(g, checkpoint=partial_path(cached), **kwargs)
    if distributed_main():
        stats.save(cached)
    return stats


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
    prepared = None if settings else prepared_file(g, "relevance", clip_fingerprint=clip_fingerprint(clip))
    if prepared is not None:
        return Relevance.load(prepared, g)
    if not compute:
        raise StyleClipError("no channel relevance (fs3) for this generator and CLIP: pass an fs3.npy "
                             "(the official FFHQ file works) or compute one with `styleclip relevance` "
                             "(hours at 1024; --fast for the estimator)")
    fn = compute_relevance if method == "exact" else estimate_relevance
    rel = fn(g, clip, stats, checkpoint=partial_path(cached), progress=progress, **settings)
    if distributed_main():
        rel.save(cached)
    return rel


def load_or_compute_identity_cost(g, identity, stats: StyleStats, path: str | Path | None = None, *,
                                  compute: bool = True, progress: ProgressFn | None = None) -> IdentityCost:
    """From `path`, else the shipped copy or the cache (keyed by generator and identity net), else computed
    (small generators only: minutes at 64 px) and cached."""
    if path is not None:
        return IdentityCost.load(path, g)
    if identity is None:
        raise StyleClipError("identity damping needs the model set's identity net (or an identity cost file)")
    cached = identity_cost_cache_path(g, identity)
    found = shipped_or(cached)
    if found.is_file():
        return IdentityCost.load(found, g)
    if not compute:
        raise StyleClipError(f"no identity cost of the style channels for this generator and identity net (looked "
                             f"for {cached}); it is computed on small generators only, as the relevance: turn "
                             "identity damping off, or compute it with styleclip.stylespace.identity_cost."
                             "compute_identity_cost and save it there")
    cost = compute_identity_cost(g, identity, stats, progress=progress)
    if distributed_main():
        cost.save(cached)
    return cost


def global_direction_inputs(g, clip, identity=None, *, stats=None, relevance=None, identity_cost=None,
                            relevance_method: str = "exact", compute_missing: bool | None = None,
                            identity_damping: float | None = None, progress: ProgressFn | None = None) -> dict:
    """The data the global-directions engine needs, {stats, relevance, identity_cost}: objects are kept,
    paths read, None found or computed (relevance and identity cost computed only for small generators unless
    `compute_missing` says otherwise). A given relevance file is read before any statistics are computed."""
    if relevance is not None and not isinstance(relevance, Relevance):
        relevance = Relevance.load(relevance, g)
    if not isinstance(stats, StyleStats):
        stats = load_or_compute_stats(g, stats)
    stats.check(g)
    if relevance is None:
        compute = computes_when_missing(g) if compute_missing is None else compute_missing
        relevance = load_or_compute_relevance(g, clip, stats, method=relevance_method, compute=compute,
                                              progress=progress)
    if identity_damping is not None and not isinstance(identity_cost, IdentityCost):
        identity_cost = load_or_compute_identity_cost(g, identity, stats, identity_cost,
                                                      compute=computes_when_missing(g), progress=progress)
    return {"stats": stats, "relevance": relevance, "identity_cost": identity_cost}
