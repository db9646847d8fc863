"""The weight registry: what each known weight is, where it comes from, and where it lives on disk.

Only this module knows directories, URLs and hashes. Resolution order for a weight file:
explicit path > $STYLECLIP_WEIGHTS_DIR > the user cache (~/.cache/styleclip) > ./weights.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import WeightsMissingError


@dataclass(frozen=True)
class WeightSpec:
    """One published weight file."""

    name: str
    filename: str
    kind: str  # generator | clip | identity | mapper | encoder | relevance
    urls: tuple[str, ...] = ()
    size: int | None = None
    sha256: str | None = None
    licence: str = ""
    non_commercial: bool = False
    description: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSet:
    """What `--model NAME` selects: a generator, a CLIP model and an identity network."""

    name: str
    generator: str
    clip: str
    identity: str | None
    description: str = ""
    builtin: bool = False  # built in code (no download)


def _drive(file_id: str) -> str:
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


REGISTRY: dict[str, WeightSpec] = {s.name: s for s in [
    WeightSpec("stylegan2-ffhq-1024", "stylegan2-ffhq-config-f.pt", "generator",
               urls=(_drive("1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"),),
               size=381_462_551, sha256="bae494ef77e32a9cd1792a81a3c167692a0e64f6bcd8b06592ff42917e2ed46e",
               licence="Nvidia Source Code License-NC (converted by rosinality)", non_commercial=True,
               description="StyleGAN2 FFHQ 1024 config-f, rosinality layout (what StyleCLIP uses)"),
    WeightSpec("e4e-ffhq-encode", "e4e_ffhq_encode.pt", "encoder",
               urls=(_drive("1cUv_reLE6k3604or78EranS7XzuVMWeO"), _drive("1O8OLrVNOItOJoNGMyQ8G8YRTeTYEfs0P")),
               size=1_201_649_680, sha256="2ace1d9a8c05c10a399bcd500b8dda118f759ff1aac89dbdab7435f2136a0999",
               licence="MIT code; contains the NVIDIA-derived FFHQ decoder (NC)", non_commercial=True,
               description="e4e encoder for FFHQ 1024 (photo -> W+ [18,512] in one pass)"),
]}

MODEL_SETS: dict[str, ModelSet] = {m.name: m for m in [
    ModelSet("ffhq", "stylegan2-ffhq-1024", "clip-vit-b32-openai", "arcface-ir-se50",
             "StyleGAN2 FFHQ 1024 + OpenAI CLIP ViT-B/32 + ArcFace IR-SE50 (downloads ~1 GB)"),
    ModelSet("debug", "debug", "debug", "debug", "tiny random networks (32 px) for tests and smoke runs",
             builtin=True),
]}


def cache_dir() -> Path:
    """The user cache for downloads and converted checkpoints ($STYLECLIP_CACHE or ~/.cache/styleclip)."""
    root = os.environ.get("STYLECLIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "styleclip")
    return Path(root)


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("STYLECLIP_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["STYLECLIP_WEIGHTS_DIR"]))
    dirs += [cache_dir(), Path("weights")]
    return dirs


def get_spec(name: str) -> WeightSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsMissingError(f"unknown weight name {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def get_model_set(name: str) -> ModelSet:
    try:
        return MODEL_SETS[name]
    except KeyError:
        raise WeightsMissingError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_SETS))}") from None


def find(name: str) -> Path | None:
    """The first existing file for weight `name` in the search directories, or None."""
    spec = get_spec(name)
    for d in search_dirs():
        p = d / spec.filename
        if p.is_file():
            return p
    return None


def resolve(name: str) -> Path:
    """Path of weight `name`; a clear WeightsMissingError (where it looked, how to get it) when absent."""
    path = find(name)
    if path is not None:
        return path
    spec = get_spec(name)
    where = ", ".join(str(d) for d in search_dirs())
    url = f" from {spec.urls[0]}" if spec.urls else ""
    raise WeightsMissingError(
        f"weight '{name}' ({spec.filename}) is not present (looked in: {where}); "
        f"download it{url} and put it in one of those folders, or pass its path")


def converted_path(source: Path) -> Path:
    """Where the safetensors conversion of a foreign checkpoint is cached (keyed by path, size, mtime)."""
    import hashlib

    st = source.stat()
    key = hashlib.sha256(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "converted" / f"{source.stem}-{key}.safetensors"
