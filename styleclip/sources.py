"""Where edits start from: seeds, saved latents (.pt / .npy), folders of latents; and how edited latents are saved.

Latent files: a W+ latent is a plain tensor [N,num_ws,D] (or [num_ws,D], or W [D] / [N,D]); an S-space latent
(what global directions and `--space styles` edits produce) is a dict {"space": "S", "styles": [one [N,C_i]
tensor per style layer]}. Both are read with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from styleclip.util.checks import MAX_SEED, file_tensors, memory, read_npy
from styleclip.errors import CheckpointError, InputError
from styleclip.types import Latent

LATENT_SUFFIXES = (".pt", ".pth", ".npy")


MAX_SEEDS = 10_000  # sources of one run (W+ of 10,000 FFHQ faces: 370 MB)


def parse_seeds(text: str) -> list[int]:
    """'0-7' -> [0..7]; '1,5,9' -> [1,5,9]; mixtures like '0-2,10' work too. Seeds are 0 .. 2^63-1, at most
    MAX_SEEDS of them (counted before any list is built)."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            lo, hi = int(lo), int(hi) if sep else int(lo)
            if hi < lo:
                raise ValueError
            if lo < 0 or hi > MAX_SEED:
                raise InputError(f"seeds must be from 0 to {MAX_SEED}, got {part!r}")
            if len(seeds) + hi - lo + 1 > MAX_SEEDS:
                raise InputError(f"--seeds {text[:40]!r} names more than {MAX_SEEDS} seeds; edit them in "
                                 "smaller runs")
            seeds += range(lo, hi + 1)
    except InputError:
        raise
    except ValueError:
        raise InputError(f"cannot read seeds {text[:60]!r}: use e.g. '0-7' or '1,5,9'") from None
    if not seeds:
        raise InputError("no seeds given")
    return seeds


def latents_from_seeds(generator, seeds: list[int], truncation: float = 0.7) -> Latent:
    """z from torch.Generator(seed) -> mapping -> truncation toward w_avg -> W+ (all rows equal)."""
    dim = generator.config.style_dim
    z = torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
    with torch.no_grad():
        w = generator.mapping(z.to(generator.w_avg.device), truncation)
    return Latent(generator.broadcast(w), labels=tuple(f"seed{s}" for s in seeds))


def save_latent(latent: Latent | torch.Tensor | list, path: str | Path) -> str:
    """Write an edited latent (W+ tensor, S-space list of styles, or a Latent) as described in the module
    docstring; returns the space written ('W+' or 'S')."""
    if isinstance(latent, Latent):
        latent = latent.w_plus if latent.styles is None else list(latent.styles)
    if isinstance(latent, torch.Tensor):
        torch.save(latent.detach().cpu(), path)
        return "W+"
    torch.save({"space": "S", "styles": [s.detach().cpu() for s in latent]}, path)
    return "S"


def latent_label(path: Path) -> str:
    """The label of a latent file: its stem without the `_latent` that `styleclip edit` appends."""
    stem = path.stem
    return stem[:-len("_latent")] if stem.endswith("_latent") and len(stem) > len("_latent") else stem


def _styles_latent(path: Path, styles, generator) -> Latent:
    layers = generator.layers
    if not isinstance(styles, (list, tuple)) or len(styles) != len(layers) or \
            not all(isinstance(s, torch.Tensor) for s in styles):
        raise InputError(f"S-space latent {path} must hold {len(layers)} style tensors (one per style layer of "
                         f"this generator), got {len(styles) if isinstance(styles, (list, tuple)) else type(styles).__name__}")
    try:
        file_tensors(dict(enumerate(styles)), str(path), what="the latent")
    except CheckpointError as e:
        raise InputError(str(e)) from None
    styles = [s.float().reshape(1, -1) if s.ndim == 1 else s.float() for s in styles]
    bad = [i for i, (s, layer) in enumerate(zip(styles, layers)) if s.ndim != 2 or s.shape[1] != layer.channels]
    if bad:
        i = bad[0]
        raise InputError(f"S-space latent {path}: style layer {i} has shape {list(styles[i].shape)}, this generator "
                         f"needs [N,{layers[i].channels}] (a latent of another generator?)")
    if not all(torch.isfinite(s).all() for s in styles):
        raise InputError(f"latent {path} contains NaN or infinite values")
    n = styles[0].shape[0]
    if any(s.shape[0] != n for s in styles):
        raise InputError(f"S-space latent {path}: the style layers hold different numbers of faces")
    if n == 0:
        raise InputError(f"latent file {path} holds an empty batch (0 latents)")
    if n > MAX_SEEDS:
        raise InputError(f"latent file {path} holds {n} latents; at most {MAX_SEEDS} per run")
    label = latent_label(path)
    labels = (label,) if n == 1 else tuple(f"{label}_{i}" for i in range(n))
    dev = generator.w_avg.device
    return Latent(None, labels=labels, styles=tuple(s.contiguous().to(dev) for s in styles))


def load_latent_file(path: str | Path, generator) -> Latent:
    """A saved latent -> Latent: W+ [N,num_ws,D] (also [num_ws,D] and W vectors [D] / [N,D]) or an S-space
    file {"space": "S", "styles": [...]} (also a bare list of style tensors, as older versions saved)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"latent file {path} does not exist")
    if path.suffix == ".npy":
        t = read_npy(path, "latent file", error=InputError)
    else:
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unreadable file is the user's input problem, reported in one line
            raise InputError(f"cannot read latent file {path}: {' '.join(str(e).split())[:200]}") from None
        if isinstance(t, dict) and "styles" in t:
            t = list(t["styles"]) if isinstance(t["styles"], (list, tuple)) else t["styles"]
        elif isinstance(t, dict):  # {"w_plus": ...} / {"latent": ...} as some tools save
            t = next((t[k] for k in ("w_plus", "latent", "latents", "w") if k in t), None)
    if isinstance(t, (list, tuple)):
        return _styles_latent(path, t, generator)
    if not isinstance(t, torch.Tensor):
        raise InputError(f"latent file {path} holds no tensor")
    try:
        file_tensors({"latent": t}, str(path), what="the latent")
    except CheckpointError as e:
        raise InputError(str(e)) from None
    t = t.float()
    num_ws, dim = generator.num_ws, generator.config.style_dim
    if t.shape == (dim,):
        t = t.view(1, 1, dim).expand(1, num_ws, dim)
    elif t.ndim == 2 and t.shape == (num_ws, dim):
        t = t.unsqueeze(0)
    elif t.ndim == 2 and t.shape[1] == dim:
        t = t.unsqueeze(1).expand(-1, num_ws, -1)
    if t.ndim != 3 or t.shape[1:] != (num_ws, dim):
        raise InputError(f"latent {path} has shape {list(t.shape)}; this generator needs W+ [N,{num_ws},{dim}] "
                         f"(or [{num_ws},{dim}], or W [{dim}])")
    n = t.shape[0]
    if n == 0:
        raise InputError(f"latent file {path} holds an empty batch (0 latents)")
    if n > MAX_SEEDS:
        raise InputError(f"latent file {path} holds {n} latents; at most {MAX_SEEDS} per run")
    memory(n * num_ws * dim * 4, f"latent file {path} ({n} latents)")
    label = latent_label(path)
    labels = (label,) if n == 1 else tuple(f"{label}_{i}" for i in range(n))
    return Latent(t.contiguous().to(generator.w_avg.device), labels=labels)


def latents_from_dir(folder: str | Path, generator) -> Latent:
    """Every latent file in a folder, concatenated in name order."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in LATENT_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise InputError(f"no latent files ({', '.join(LATENT_SUFFIXES)}) in {folder}")
    parts, total = [], 0
    for f in files:
        parts.append(load_latent_file(f, generator))
        total += parts[-1].batch_size
        if total > MAX_SEEDS:
            raise InputError(f"{folder} holds more than {MAX_SEEDS} latents; edit them in smaller runs")
    labels = sum((p.labels for p in parts), ())
    spaces = {p.space for p in parts}
    if spaces == {"S"}:
        return Latent(None, labels, styles=tuple(torch.cat(layer) for layer in zip(*(p.styles for p in parts))))
    if len(spaces) > 1:
        s_files = [f.name for f, p in zip(files, parts) if p.space == "S"]
        raise InputError(f"{folder} mixes W+ and S-space latents ({', '.join(s_files[:3])} are S): edit them "
                         "from separate folders")
    return Latent(torch.cat([p.w_plus for p in parts]), labels=labels)
