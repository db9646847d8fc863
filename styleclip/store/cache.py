"""The user cache: where every cached result lives, by one rule.

    <cache>/<folder of the kind>/<name parts joined by '-'><suffix>

`<cache>` is $STYLECLIP_CACHE (else $XDG_CACHE_HOME/styleclip or ~/.cache/styleclip). The name parts are
content keys (`styleclip.util.fingerprint`: the generator, CLIP, identity net or file an entry belongs to)
and settings; the S-space kinds share a folder, so there the kind heads the name. File names are those of
earlier releases, so their caches are still found.
"""
from __future__ import annotations

import os
from pathlib import Path

# kind -> (folder under the cache, whether the kind heads the file name)
KINDS: dict[str, tuple[str, bool]] = {
    "stats": ("stylespace", True),  # style statistics
    "fs3": ("stylespace", True),  # channel relevance
    "idcost": ("stylespace", True),  # identity cost of the style channels
    "inversion": ("inversions", False),  # W+ of an aligned photo
    "pti": ("pti", False),  # pivotal-tuning weight deltas
    "converted": ("converted", False),  # foreign checkpoints as safetensors
    "prepared": ("prepared", False),  # index of `styleclip prepare` folders, by generator
    "mappers": ("mappers", False),  # trained mappers (searched, not written, here)
    "open_clip": ("open_clip", False),  # open_clip's own download cache (it names the files)
}


def cache_dir() -> Path:
    """The user cache for downloads and cached results ($STYLECLIP_CACHE or ~/.cache/styleclip)."""
    root = os.environ.get("STYLECLIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "styleclip")
    return Path(root)


def cache_folder(kind: str) -> Path:
    """The folder of one kind of cache entry."""
    if kind not in KINDS:
        raise KeyError(f"unknown cache kind {kind!r}; known: {', '.join(KINDS)}")
    return cache_dir() / KINDS[kind][0]


def cache_path(kind: str, *parts: str, suffix: str) -> Path:
    """The cache entry of `kind` named by `parts` (content keys and settings), e.g.
    cache_path("stats", fingerprint, "n100000", suffix=".safetensors") -> <cache>/stylespace/stats-<fp>-n100000
    .safetensors."""
    if not parts or any(not p or "/" in p or os.sep in p for p in parts):
        raise ValueError(f"cache name parts must be non-empty and hold no path separator: {parts!r}")
    head = (kind,) if KINDS.get(kind, ("", False))[1] else ()
    return cache_folder(kind) / ("-".join(head + tuple(parts)) + suffix)


def partial_path(entry: Path) -> Path:
    """Where the resumable work of a cache entry being computed is kept (next to it)."""
    return entry.with_name(entry.stem + ".partial")
