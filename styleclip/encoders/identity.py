"""Identity embeddings of face images and the identity loss.

Every identity net takes generator output (NCHW in [-1, 1], any size) and returns unit embeddings [N, 512]:
- `ArcFaceIdentity`: ArcFace IR-SE50 with StyleCLIP's preprocessing (adaptive avg-pool to 256 when the image is
  another size, crop rows 35:223 / cols 32:220, adaptive avg-pool to 112; values stay in [-1, 1]).
- `FaceNetIdentity`: facenet-pytorch InceptionResnetV1 (VGGFace2): the same face crop, avg-pooled to 160 px,
  then facenet's `fixed_image_standardization` of [0, 255] values, (x - 127.5) / 128.
- `DebugIdentity`: a tiny seeded random conv net for the `debug` model set (no download).
All are frozen and in eval mode; gradients flow to the image, never to their weights.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from styleclip.errors import CheckpointError
from styleclip.nets.arcface import IRSE50

FACE_CROP = (slice(35, 223), slice(32, 220))  # rows, cols of StyleCLIP's ID-loss crop at 256 px


def face_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """StyleCLIP's ID-loss crop: pool to 256 (if needed), crop the face, adaptive avg-pool to `size`."""
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"expected images [N,3,H,W], got shape {tuple(img.shape)}")
    if img.shape[-2:] != (256, 256):
        img = F.adaptive_avg_pool2d(img, (256, 256))
    return F.adaptive_avg_pool2d(img[:, :, FACE_CROP[0], FACE_CROP[1]], (size, size))


class IdentityNet(nn.Module):
    """Base class: `embed(img [-1,1]) -> unit [N, 512]`, frozen, eval mode, follows the input's device."""

    name = "identity"
    embed_dim = 512

    def _freeze(self):
        self.eval().requires_grad_(False)
        return self

    def train(self, mode: bool = True):  # always stays in eval mode (BatchNorm statistics are fixed)
        return super().train(False)

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.embed(img)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity per sample [N] between the identities of two image batches."""
        return (self.embed(a) * self.embed(b)).sum(-1)


class ArcFaceIdentity(IdentityNet):
    name = "arcface-ir-se50"

    def __init__(self, net: IRSE50 | None = None):
        super().__init__()
        self.net = net if net is not None else IRSE50()
        self._freeze()

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        return face_crop(img, 112)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(img))

    @classmethod
    def from_file(cls, path: str | Path) -> "ArcFaceIdentity":
        """Load `model_ir_se50.pth` (a plain state dict) strictly; missing `num_batches_tracked` is tolerated."""
        return cls.from_state_dict(read_state_dict(path), source=str(path))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], *, source: str = "state dict") -> "ArcFaceIdentity":
        net = IRSE50()
        load_strict(net, state, source=source)
        return cls(net)


class FaceNetIdentity(IdentityNet):
    name = "facenet-vggface2"
    input_size = 160

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self._freeze()

    @staticmethod
    def build(num_classes: int | None = 8631) -> nn.Module:
        """facenet-pytorch's InceptionResnetV1 without downloading; with a `logits` layer of `num_classes`
        so the published VGGFace2 state dict (which holds the classifier) loads strictly."""
        from facenet_pytorch import InceptionResnetV1

        net = InceptionResnetV1(pretrained=None, classify=False)
        if num_classes:
            net.logits = nn.Linear(512, num_classes)
        return net

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        x = face_crop(img, self.input_size)
        return ((x + 1) * 127.5 - 127.5) / 128.0  # fixed_image_standardization of [0, 255] pixels

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(self.preprocess(img)), dim=-1)  # classify=False: already unit, keep exact

    @classmethod
    def from_file(cls, path: str | Path) -> "FaceNetIdentity":
        return cls.from_state_dict(read_state_dict(path), source=str(path))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], *, source: str = "state dict") -> "FaceNetIdentity":
        logits = state.get("logits.weight")
        net = cls.build(logits.shape[0] if logits is not None else None)
        load_strict(net, state, source=source)
        return cls(net)


class TinyIdentityNet(nn.Module):
    """Three strided convs on a 32 px image, flattened to 512, a linear layer, L2 normalisation."""

    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(16, 32, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(32, 32, 3, 2, 1), nn.LeakyReLU(0.2),
        )
        self.fc = nn.Linear(32 * 4 * 4, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(self.convs(x).flatten(1)), dim=-1)


class DebugIdentity(IdentityNet):
    """The `debug` identity net: tiny, random weights from a fixed seed; same interface as ArcFace."""

    name = "debug"
    input_size = 32

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = TinyIdentityNet()
        self._freeze()

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"expected images [N,3,H,W], got shape {tuple(img.shape)}")
        return F.adaptive_avg_pool2d(img, (self.input_size, self.input_size))

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(img))


class IdentityLoss(nn.Module):
    """`1 - cos(e(img), e(reference))` per sample [N]. The reference embedding is computed once (no grad)
    and cached; a single reference broadcasts over the batch."""

    def __init__(self, identity_net: IdentityNet, reference_img: torch.Tensor):
        super().__init__()
        self.identity_net = identity_net
        with torch.no_grad():
            self.register_buffer("reference", identity_net.embed(reference_img).detach(), persistent=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        emb = self.identity_net.embed(img)
        if self.reference.shape[0] not in (1, emb.shape[0]):
            raise ValueError(f"{emb.shape[0]} images but {self.reference.shape[0]} reference embeddings")
        return 1 - (emb * self.reference.to(emb.dtype)).sum(-1)


# ---- reading weight files ---------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a torch.save file, read with weights_only=True (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle globals, ...
        raise CheckpointError(f"{path}: unreadable weights file (truncated, corrupt or not a state dict): "
                              f"{' '.join(str(e).split())[:200]}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    from styleclip.util.checks import file_tensors

    file_tensors(state, str(path))
    return state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """load_state_dict(strict=True) with a one-line CheckpointError naming missing / unexpected keys and shape
    mismatches. BatchNorm `num_batches_tracked` counters absent from old (PyTorch 0.4) files are filled in."""
    expected = module.state_dict()
    state = dict(state)
    for k in expected:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} (expected {list(v.shape)})" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = [f"{label} {', '.join(ks[:5])}{' ...' if len(ks) > 5 else ''} ({len(ks)})"
                for label, ks in (("missing keys", missing), ("unexpected keys", unexpected),
                                  ("shape mismatch", wrong)) if ks]
    if problems:
        raise CheckpointError(f"{source}: does not match {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def debug_identity(seed: int = 0) -> DebugIdentity:
    return DebugIdentity(seed)
