"""The toy-face networks: a small CLIP config (built by open_clip's own CLIP class), the evaluation-only
attribute classifier and the identity embedding net."""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from styleclip.toy.data import ATTRIBUTES
from styleclip.toy.render import ATTRIBUTE_VALUES

# 64 px ViT with 8 px patches (4 px patches see small mouths better but cost 3.5x per image on CPU: too slow
# for the 2-core budget); a narrow text tower keeps the 49408-token embedding (the real tokenizer's vocabulary)
# at 6.3M parameters. The logit scale starts at 30 (open_clip's 1/0.07 barely moves in short runs) and gets
# a 10x learning rate (ClipTask).
CLIP_CONFIG = {
    "embed_dim": 128,
    "quick_gelu": True,
    "init_logit_scale": math.log(30.0),
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 192, "layers": 4, "head_width": 64},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 3},
}

# a tiny config of the same shape for tests
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "init_logit_scale": math.log(30.0),
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_clip(config: dict, seed: int = 0) -> nn.Module:
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.CLIP(**config)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvTrunk(nn.Module):
    """64 px -> [N, 8*width] features: a stride-2 stem, then 4 conv blocks at 32, 16, 8, 4 px and global
    average pooling (~60M multiply-adds per image at width 32)."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.blocks = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            _block(w, w), nn.MaxPool2d(2), _block(w, 2 * w), nn.MaxPool2d(2),
            _block(2 * w, 4 * w), nn.MaxPool2d(2), _block(4 * w, 8 * w))
        self.out_dim = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).mean(dim=(2, 3))


class AttributeClassifier(nn.Module):
    """Evaluation only (never in a loss): one linear head per attribute over a small CNN trunk.
    forward(img in [-1,1]) -> {attribute: logits [N, len(values)]}."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.width = width
        self.trunk = ConvTrunk(width)
        self.heads = nn.ModuleDict({a: nn.Linear(self.trunk.out_dim, len(ATTRIBUTE_VALUES[a]))
                                    for a in ATTRIBUTES})

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.trunk(img)
        return {a: h(f) for a, h in self.heads.items()}

    @torch.no_grad()
    def predict(self, img: torch.Tensor) -> dict[str, list]:
        """Attribute values (as in ATTRIBUTE_VALUES) per image."""
        logits = self(img)
        return {a: [ATTRIBUTE_VALUES[a][i] for i in logits[a].argmax(1).tolist()] for a in ATTRIBUTES}


class ToyIdentityNet(nn.Module):
    """Identity embedding for toy faces: same interface as styleclip.encoders.identity nets,
    `embed(img in [-1,1]) -> unit [N, embed_dim]`; trained to keep identity factors and ignore edits."""

    name = "toy_identity"

    def __init__(self, width: int = 32, embed_dim: int = 128):
        super().__init__()
        self.width, self.embed_dim = width, embed_dim
        self.trunk = ConvTrunk(width)
        self.proj = nn.Linear(self.trunk.out_dim, embed_dim)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-1] != 64 or img.shape[-2] != 64:
            img = F.adaptive_avg_pool2d(img, (64, 64)) if img.shape[-1] > 64 else \
                F.interpolate(img, size=(64, 64), mode="bilinear", align_corners=False)
        return F.normalize(self.proj(self.trunk(img)), dim=-1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.embed(img)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (self.embed(a) * self.embed(b)).sum(-1)
