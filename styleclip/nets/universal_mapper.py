"""The text-conditioned ("universal") latent mapper: M(w_plus, delta_e) -> residual [N,num_ws,D].

One network for any prompt (DeltaEdit / HairCLIP style): a W+ latent and a unit CLIP embedding direction
delta_e [N,E] in, a W+ residual out. Like LevelsMapper it has one sub-network per level (coarse / medium /
fine W+ rows); each is an MLP applied to every row of its level, fed the row (PixelNorm-ed) concatenated with
delta_e scaled to unit RMS. The last layer starts at zero, so an untrained mapper is the identity edit.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from styleclip.nets.mapper import LEVELS, level_split


class ConditionedMLP(nn.Module):
    """[rows..., D + E] -> [rows..., D]: `n_layers` linear layers, leaky ReLU between them."""

    def __init__(self, style_dim: int, clip_dim: int, hidden: int, n_layers: int):
        super().__init__()
        dims = [style_dim + clip_dim] + [hidden] * (n_layers - 1) + [style_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.leaky_relu(x, 0.2)
        return x


class UniversalMapper(nn.Module):
    """M(w_plus [N,num_ws,D], delta_e [N,E]) -> residual [N,num_ws,D]; the edit is w_plus + scale * M(...)."""

    def __init__(self, num_ws: int, style_dim: int, clip_dim: int, *, hidden: int = 256, n_layers: int = 4,
                 split: tuple[int, int, int] | None = None):
        super().__init__()
        split = tuple(split) if split is not None else level_split(num_ws)
        if len(split) != 3 or sum(split) != num_ws or min(split) < 0:
            raise ValueError(f"split {split} must be 3 row counts summing to num_ws={num_ws}")
        self.num_ws, self.style_dim, self.clip_dim = num_ws, style_dim, clip_dim
        self.hidden, self.n_layers, self.split = hidden, n_layers, split
        self.levels = tuple(lv for lv, n in zip(LEVELS, split) if n > 0)
        self.nets = nn.ModuleDict({lv: ConditionedMLP(style_dim, clip_dim, hidden, n_layers) for lv in self.levels})

    def architecture(self) -> dict:
        return {"type": "UniversalMapper", "num_ws": self.num_ws, "style_dim": self.style_dim,
                "clip_dim": self.clip_dim, "hidden": self.hidden, "n_layers": self.n_layers,
                "split": list(self.split)}

    def forward(self, w_plus: torch.Tensor, delta_e: torch.Tensor) -> torch.Tensor:
        if w_plus.ndim != 3 or w_plus.shape[1:] != (self.num_ws, self.style_dim):
            raise ValueError(f"w_plus must have shape [N,{self.num_ws},{self.style_dim}], got {list(w_plus.shape)}")
        if delta_e.ndim != 2 or delta_e.shape != (w_plus.shape[0], self.clip_dim):
            raise ValueError(f"delta_e must have shape [{w_plus.shape[0]},{self.clip_dim}], got {list(delta_e.shape)}")
        x = w_plus * torch.rsqrt(w_plus.square().mean(-1, keepdim=True) + 1e-8)
        cond = F.normalize(delta_e, dim=-1) * math.sqrt(self.clip_dim)
        parts, row = [], 0
        for lv, n in zip(LEVELS, self.split):
            if n == 0:
                continue
            rows = x[:, row:row + n]
            c = cond[:, None, :].expand(-1, n, -1)
            parts.append(self.nets[lv](torch.cat([rows, c], dim=-1)))
            row += n
        return torch.cat(parts, dim=1)
