"""Where edits start from: seeds, saved latents (.pt / .npy), folders of latents."""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import InputError
from .types import Latent

LATENT_SUFFIXES = (".pt", ".pth", ".npy")


def parse_seeds(text: str) -> list[int]:
    """'0-7' -> [0..7]; '1,5,9' -> [1,5,9]; mixtures like '0-2,10' work too."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else part[1:].split("-", 1)
                lo, hi = int(lo), int(hi)
                if hi < lo:
                    raise ValueError
                seeds += list(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise InputError(f"cannot read seeds {text!r}: use e.g. '0-7' or '1,5,9'") from None
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


def load_latent_file(path: str | Path, generator) -> Latent:
    """A saved latent -> Latent [N,num_ws,D]. Accepts [num_ws,D], [N,num_ws,D] and W vectors [D] / [N,D]."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"latent file {path} does not exist")
    try:
        if path.suffix == ".npy":
            import numpy as np

            t = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            t = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(t, dict):  # {"w_plus": ...} / {"latent": ...} as some tools save
                t = next((t[k] for k in ("w_plus", "latent", "latents", "w") if k in t), None)
    except Exception as e:  # any unreadable file is the user's input problem, reported in one line
        raise InputError(f"cannot read latent file {path}: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(t, torch.Tensor):
        raise InputError(f"latent file {path} holds no tensor")
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
    if not torch.isfinite(t).all():
        raise InputError(f"latent {path} contains NaN or infinite values")
    n = t.shape[0]
    labels = (path.stem,) if n == 1 else tuple(f"{path.stem}_{i}" for i in range(n))
    return Latent(t.contiguous().to(generator.w_avg.device), labels=labels)


def latents_from_dir(folder: str | Path, generator) -> Latent:
    """Every latent file in a folder, concatenated in name order."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in LATENT_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise InputError(f"no latent files ({', '.join(LATENT_SUFFIXES)}) in {folder}")
    parts = [load_latent_file(f, generator) for f in files]
    return Latent(torch.cat([p.w_plus for p in parts]), labels=sum((p.labels for p in parts), ()))
