"""e4e encoder (Tov et al. 2021, "Designing an Encoder for StyleGAN Image Manipulation"): image -> W+.

Module names follow the published `e4e_ffhq_encode.pt` (keys `encoder.*` with the prefix stripped), so that
checkpoint loads strictly. Layout: an IR-SE50 body (the ArcFace backbone without its head), a small feature
pyramid over the outputs of body units 6, 20 and 23, and one GradualStyleBlock per W+ row. e4e predicts one
w from the coarsest features and adds a delta per further row; `latent_avg` is added on top.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from styleclip.nets.arcface import IR50_STAGES, BottleneckIRSE
from styleclip.nets.stylegan2 import EqualLinear

def ir_se_body(stages=IR50_STAGES) -> nn.Sequential:
    units, in_ch = [], 64
    for n, depth in stages:
        for i in range(n):
            units.append(BottleneckIRSE(in_ch, depth, 2 if i == 0 else 1))
            in_ch = depth
    return nn.Sequential(*units)


class GradualStyleBlock(nn.Module):
    """Features [N,C,s,s] -> one style [N,out]: log2(s) stride-2 convs with LeakyReLU(0.01), then EqualLinear."""

    def __init__(self, in_ch: int, out_ch: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, stride=2, padding=1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_ch, out_ch, lr_mul=1.0)
        self.out_ch = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_ch))


def upsample_add(x: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """FPN top-down step: bilinear (align_corners=True) resize of x to the lateral map, plus the lateral map."""
    return F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


class Encoder4Editing(nn.Module):
    """e4e (IR-SE50 body): img [N,3,256,256] in [-1,1] -> w_plus [N,num_ws,512] (latent_avg added).

    Rows 0-2 read the coarse features (c3, 16x16 for a 256 input), rows 3-6 the middle ones (p2, 32x32),
    the rest the fine ones (p1, 64x64). `latent_avg` [num_ws,512] is a buffer, loaded from the checkpoint's
    top-level `latent_avg`.
    """

    COARSE, MIDDLE = 3, 7  # first rows of the middle and of the fine group
    TAPS = (6, 20, 23)  # body units whose outputs are c1 (128 ch), c2 (256 ch), c3 (512 ch)

    def __init__(self, stylegan_size: int = 1024, style_dim: int = 512):
        super().__init__()
        self.num_ws = 2 * int(math.log2(stylegan_size)) - 2
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.body = ir_se_body()
        self.styles = nn.ModuleList(
            GradualStyleBlock(512, style_dim, 16 if i < self.COARSE else 32 if i < self.MIDDLE else 64)
            for i in range(self.num_ws))
        self.latlayer1 = nn.Conv2d(256, 512, 1)
        self.latlayer2 = nn.Conv2d(128, 512, 1)
        self.register_buffer("latent_avg", torch.zeros(self.num_ws, style_dim))

    def codes(self, img: torch.Tensor) -> torch.Tensor:
        """The encoder's own output (without latent_avg): w0 from the coarsest features, w_i = w0 + delta_i."""
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"img must have shape [N,3,H,W], got {list(img.shape)}")
        x = self.input_layer(img)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.TAPS:
                taps.append(x)
        c1, c2, c3 = taps
        w0 = self.styles[0](c3)
        rows = [w0]
        features = c3
        for i in range(1, self.num_ws):
            if i == self.COARSE:
                features = p2 = upsample_add(c3, self.latlayer1(c2))
            elif i == self.MIDDLE:
                features = upsample_add(p2, self.latlayer2(c1))
            rows.append(w0 + self.styles[i](features))
        return torch.stack(rows, dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.codes(img) + self.latent_avg.to(img.dtype)
