"""Content keys: which weights (or which file) a cached or recorded result belongs to.

One rule for every module, `module_fingerprint` (shapes and a strided sample of every parameter and buffer:
cheap even at 1024 px), and one function per kind of module built on it. Their values are part of the file
names of the shipped and cached S-space files, so they must not change.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def module_fingerprint(module, extra: str = "") -> str:
    """16 hex digits over `extra`, then each parameter's and buffer's name, shape and a strided sample of
    its values (about 4096 per tensor)."""
    h = hashlib.sha256(extra.encode())
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        flat = t.detach().reshape(-1)
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(flat[:: max(1, flat.numel() // 4096)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def generator_fingerprint(g) -> str:
    """A generator: its architecture config and weights."""
    return module_fingerprint(g, json.dumps(g.config.to_dict(), sort_keys=True))


def clip_fingerprint(clip) -> str:
    """A CLIP encoder: its model's weights, name and input convention."""
    return module_fingerprint(clip.model, f"{clip.name}|{clip.official_input}")


def identity_fingerprint(identity) -> str:
    """An identity net (or any other frozen module): its class and weights."""
    return module_fingerprint(identity, type(identity).__name__)


def encoder_fingerprint(encoder) -> str:
    """An image encoder (e4e): the file it was read from when known (hashing it is slow), else its weights."""
    source = getattr(encoder, "source_path", None)
    return file_fingerprint(source) if source else identity_fingerprint(encoder)


def file_fingerprint(path: str | Path) -> str:
    """A file, by resolved path, size and modification time (not its bytes: weights are large)."""
    path = Path(path)
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
