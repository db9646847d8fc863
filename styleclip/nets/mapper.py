"""The StyleCLIP latent mapper (LevelsMapper): three residual MLPs over the coarse / medium / fine W+ rows.

Module names follow the official checkpoints, so `mapper.course_mapping.mapping.1.weight` (sic, "course")
... `mapper.fine_mapping.mapping.4.bias` load directly once the `mapper.` prefix is stripped; index 0 of each
`mapping` is the PixelNorm (no parameters).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from styleclip.nets.stylegan2 import EqualLinear, PixelNorm

LEVELS = ("coarse", "medium", "fine")
MODULE_NAMES = {"coarse": "course_mapping", "medium": "medium_mapping", "fine": "fine_mapping"}
OFFICIAL_SPLIT = (4, 4, 10)  # rows per level of the 18-row (1024 px) W+


def level_split(num_ws: int) -> tuple[int, int, int]:
    """Rows of W+ per level (coarse, medium, fine), taken in order.

    Row r of W+ feeds the layers of resolution 2**(2 + r // 2) (rows 0-1: 4 px, 2-3: 8 px, ...). Coarse = the
    rows of 4-8 px, medium = 16-32 px, fine = 64 px and up: 4/4/10 at 1024 (the official split), 4/4/6 at 256,
    4/4/2 at 64. Generators below 64 px have no fine rows under that rule; there the rows are split in the
    official 4:4:10 proportion, rounded, at least one row for coarse and medium: 8 rows (32 px, the debug
    generator) -> 2/2/4, 6 rows -> 1/1/4, 4 rows -> 1/1/2.
    """
    if num_ws < 2:
        raise ValueError(f"a W+ latent needs at least 2 rows, got {num_ws}")
    if num_ws >= 10:
        return 4, 4, num_ws - 8
    part = max(1, round(num_ws * OFFICIAL_SPLIT[0] / sum(OFFICIAL_SPLIT)))
    if 2 * part > num_ws:
        part = num_ws // 2
    return part, part, num_ws - 2 * part


class _ActivatedEqualLinear(EqualLinear):
    """EqualLinear + bias + leaky ReLU(0.2) * sqrt(2) on the LAST dim.

    The official fused_leaky_relu adds the bias along the last dim for 3-D inputs [B,rows,512]; the
    generator's (dim-1) helper would add it across rows instead."""

    def __init__(self, dim: int, lr_mul: float):
        super().__init__(dim, dim, lr_mul=lr_mul, activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * math.sqrt(2.0)


class SubMapper(nn.Module):
    """PixelNorm across the W+ rows of the group (dim 1 of [B,rows,D], the official quirk), then
    `n_layers` EqualLinear(D, D, lr_mul) with leaky ReLU after every layer, the last included."""

    def __init__(self, style_dim: int = 512, *, n_layers: int = 4, lr_mul: float = 0.01):
        super().__init__()
        self.mapping = nn.Sequential(PixelNorm(dim=1), *[_ActivatedEqualLinear(style_dim, lr_mul)
                                                         for _ in range(n_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mapping(x)


class LevelsMapper(nn.Module):
    """M(w_plus) -> residual [B,num_ws,D]; the edit is w_plus + residual_scale * M(w_plus) (applied outside).

    A level that is switched off (no_coarse / no_medium / no_fine) is not built and its residual rows are 0.
    `split` overrides the rows per level (default `level_split(num_ws)`).
    """

    def __init__(self, num_ws: int = 18, style_dim: int = 512, *, no_coarse: bool = False, no_medium: bool = False,
                 no_fine: bool = False, split: tuple[int, int, int] | None = None):
        super().__init__()
        split = tuple(split) if split is not None else level_split(num_ws)
        if len(split) != 3 or sum(split) != num_ws or min(split) < 0:
            raise ValueError(f"split {split} must be 3 row counts summing to num_ws={num_ws}")
        self.num_ws, self.style_dim, self.split = num_ws, style_dim, split
        off = {"coarse": no_coarse, "medium": no_medium, "fine": no_fine}
        self.levels = tuple(lv for lv, n in zip(LEVELS, split) if not off[lv] and n > 0)
        if not self.levels:
            raise ValueError("a mapper needs at least one level (coarse, medium or fine)")
        for lv in self.levels:
            self.add_module(MODULE_NAMES[lv], SubMapper(style_dim))

    def level_rows(self) -> dict[str, slice]:
        bounds = [0, self.split[0], self.split[0] + self.split[1], self.num_ws]
        return {lv: slice(bounds[i], bounds[i + 1]) for i, lv in enumerate(LEVELS)}

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        if w_plus.ndim != 3 or w_plus.shape[1:] != (self.num_ws, self.style_dim):
            raise ValueError(f"w_plus must have shape [N,{self.num_ws},{self.style_dim}], got {list(w_plus.shape)}")
        parts = []
        for lv, rows in self.level_rows().items():
            x = w_plus[:, rows]
            parts.append(getattr(self, MODULE_NAMES[lv])(x) if lv in self.levels else torch.zeros_like(x))
        return torch.cat(parts, dim=1)

    def extra_repr(self) -> str:
        return f"num_ws={self.num_ws}, style_dim={self.style_dim}, split={self.split}, levels={self.levels}"
