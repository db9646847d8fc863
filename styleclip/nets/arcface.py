"""ArcFace IR-SE50 backbone (the face-recognition net of StyleCLIP's identity loss).

Module names follow the published `model_ir_se50.pth` (TreB1eN InsightFace port) so that its state dict
(397 entries, 43.8M parameters) loads strictly: `input_layer.{0,1,2}`, `body.{0..23}.{shortcut_layer,
res_layer}`, `output_layer.{0,3,4}`. Input: 112x112 RGB in [-1, 1]; output: unit 512-d embedding.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

# (units, depth) per stage of the 50-layer variant; the first unit of every stage has stride 2
IR50_STAGES = ((3, 64), (4, 128), (14, 256), (3, 512))


class SEModule(nn.Module):
    """Squeeze-and-excitation with 1x1 convs (no bias), reduction 16."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BottleneckIRSE(nn.Module):
    """IR-SE unit: BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN -> SE, plus a shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut_layer(x) + self.res_layer(x)


class IRSE50(nn.Module):
    """ArcFace IR-SE50 (`Backbone(112, 50, 'ir_se')`, affine final BN). forward: [N,3,112,112] -> unit [N,512]."""

    input_size = 112

    def __init__(self, drop_ratio: float = 0.6):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units = []
        in_channels = 64
        for n, depth in IR50_STAGES:
            for i in range(n):
                units.append(BottleneckIRSE(in_channels, depth, 2 if i == 0 else 1))
                in_channels = depth
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 512),
            nn.BatchNorm1d(512, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (112, 112):
            raise ValueError(f"IR-SE50 expects 112x112 input, got {tuple(x.shape[-2:])}")
        x = self.output_layer(self.body(self.input_layer(x)))
        return F.normalize(x, dim=-1)
