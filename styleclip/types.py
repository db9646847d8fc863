"""Plain data passed between the engines and the front ends."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

ProgressFn = Callable[[int, int], None]
"""progress(done, total): called as long work advances (CLI: a bar; app: gr.Progress)."""


@dataclass(frozen=True)
class Latent:
    """A source to edit: w_plus [N,num_ws,D] (N >= 1), with an optional label per row (seed, file name)."""

    w_plus: torch.Tensor
    labels: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.w_plus, torch.Tensor) or self.w_plus.ndim != 3:
            shape = list(self.w_plus.shape) if isinstance(self.w_plus, torch.Tensor) else type(self.w_plus).__name__
            raise ValueError(f"a latent must be w_plus with shape [N,num_ws,dim], got {shape}")
        if not torch.isfinite(self.w_plus).all():
            raise ValueError("the latent contains NaN or infinite values")

    @property
    def batch_size(self) -> int:
        return self.w_plus.shape[0]


@dataclass(frozen=True)
class Prompt:
    """What to edit toward. `strength`: alpha for global directions, residual scale for the mapper,
    and for optimization a multiplier of the CLIP term."""

    target: str
    neutral: str = "a face"
    strength: float = 1.0

    def __post_init__(self):
        if not isinstance(self.target, str) or not self.target.strip():
            raise ValueError("the prompt is empty: say what to edit toward, e.g. --prompt 'mohawk'")


@dataclass(frozen=True)
class EditResult:
    """An edit: img [N,3,H,W] in [-1,1], the edited latent (w_plus, or styles for S-space edits), metrics."""

    image: torch.Tensor
    latent: torch.Tensor | list[torch.Tensor]
    engine: str
    metrics: dict = field(default_factory=dict)
    source_image: Optional[torch.Tensor] = None
    frames: tuple = ()
