"""styleclip: text-driven editing of StyleGAN2 images (StyleCLIP).

`import styleclip` is cheap: the public names below are imported on first use.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Generator": "styleclip.nets.stylegan2",
    "GeneratorConfig": "styleclip.nets.stylegan2",
    "load_generator": "styleclip.factory",
    "load_clip": "styleclip.factory",
    "load_identity": "styleclip.factory",
    "create_editor": "styleclip.factory",
    "resolve_device": "styleclip.factory",
    "read_generator": "styleclip.store.readers",
    "save_generator": "styleclip.store.readers",
    "Latent": "styleclip.types",
    "Prompt": "styleclip.types",
    "EditResult": "styleclip.types",
    "StyleClipError": "styleclip.errors",
    "CheckpointError": "styleclip.errors",
    "WeightsMissingError": "styleclip.errors",
    "InputError": "styleclip.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'styleclip' has no attribute {name!r}")
