"""The toy-faces models as shipped: where their files are and how they load (no training code here)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from styleclip.encoders.clip import ClipEncoder
from styleclip.errors import CheckpointError
from styleclip.nets.stylegan2 import Generator, GeneratorConfig
from styleclip.toy.models import AttributeClassifier, ToyIdentityNet

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "toy_faces"


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from styleclip.util.checks import file_tensors, reading

    if not Path(path).is_file():
        raise CheckpointError(f"no toy weights at {path}")
    with reading(path, "toy weights"):
        state = load_file(str(path))
    file_tensors(state, str(path))
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def read_config(directory: Path, name: str) -> dict:
    p = directory / f"{name}.json"
    if not p.is_file():
        raise CheckpointError(f"no toy {name} config at {p}")
    return json.loads(p.read_text())


def load_toy_clip(directory: str | Path = ASSETS) -> ClipEncoder:
    directory = Path(directory)
    return ClipEncoder.from_config(read_config(directory, "clip"), state_dict=read_safetensors(directory / "clip.safetensors"),
                                   name="toy_faces")


def load_toy_classifier(directory: str | Path = ASSETS) -> AttributeClassifier:
    directory = Path(directory)
    m = AttributeClassifier(**read_config(directory, "classifier"))
    m.load_state_dict(read_safetensors(directory / "classifier.safetensors"))
    return m.eval().requires_grad_(False)


def load_toy_identity(directory: str | Path = ASSETS) -> ToyIdentityNet:
    directory = Path(directory)
    m = ToyIdentityNet(**read_config(directory, "identity"))
    m.load_state_dict(read_safetensors(directory / "identity.safetensors"))
    return m.eval().requires_grad_(False)


def load_toy_generator(directory=None) -> Generator:
    """The exported toy generator (generator.safetensors + generator.json), frozen."""
    directory = Path(directory) if directory is not None else ASSETS
    g = Generator(GeneratorConfig.from_dict(read_config(directory, "generator")))
    g.load_state_dict(read_safetensors(directory / "generator.safetensors"))
    return g.eval().requires_grad_(False)
