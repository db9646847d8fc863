"""Plain data passed between the engines and the front ends."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import math
import numbers

import torch

from styleclip.errors import InputError

MAX_PROMPT_CHARS = 1000  # CLIP reads 77 tokens; longer text is a mistake (and costs tokenizer time)

ProgressFn = Callable[[int, int], None]
"""progress(done, total): called as long work advances (CLI: a bar; app: gr.Progress)."""


@dataclass(frozen=True)
class Latent:
    """A source to edit, in W+ (`w_plus` [N,num_ws,D]) or in S (`styles`: one [N,C_i] tensor per style layer,
    e.g. the result of a global edit; `w_plus` is then None), with an optional label per row."""

    w_plus: Optional[torch.Tensor]
    labels: tuple[str, ...] = ()
    styles: Optional[tuple[torch.Tensor, ...]] = None

    def __post_init__(self):
        if self.styles is not None:
            if self.w_plus is not None:
                raise InputError("a latent is either W+ (w_plus) or S (styles), not both")
            styles = tuple(self.styles)
            if not styles or any(not isinstance(s, torch.Tensor) or s.ndim != 2 or s.shape[0] != styles[0].shape[0]
                                 for s in styles):
                raise InputError("S-space styles must be one [N,C] tensor per style layer, all with the same N")
            if styles[0].shape[0] == 0:
                raise InputError("the latent batch is empty (N = 0): nothing to edit")
            if not all(torch.isfinite(s).all() for s in styles):
                raise InputError("the latent contains NaN or infinite values")
            object.__setattr__(self, "styles", styles)
            return
        if not isinstance(self.w_plus, torch.Tensor) or self.w_plus.ndim != 3:
            shape = list(self.w_plus.shape) if isinstance(self.w_plus, torch.Tensor) else type(self.w_plus).__name__
            raise InputError(f"a latent must be w_plus with shape [N,num_ws,dim], got {shape}")
        if self.w_plus.shape[0] == 0:
            raise InputError("the latent batch is empty (N = 0): nothing to edit")
        if not torch.isfinite(self.w_plus).all():
            raise InputError("the latent contains NaN or infinite values")

    @property
    def space(self) -> str:
        """'W+' or 'S'."""
        return "S" if self.styles is not None else "W+"

    @property
    def batch_size(self) -> int:
        return self.styles[0].shape[0] if self.styles is not None else self.w_plus.shape[0]

    def rows(self, lo: int, hi: int) -> "Latent":
        """Sources lo..hi-1 (same space)."""
        if self.styles is not None:
            return Latent(None, self.labels[lo:hi], styles=tuple(s[lo:hi] for s in self.styles))
        return Latent(self.w_plus[lo:hi], self.labels[lo:hi])


@dataclass(frozen=True)
class Prompt:
    """What to edit toward: a text `target`, or a reference `image` [1,3,H,W] in [-1,1] whose CLIP image
    embedding is the target (text then only labels it). `strength`: alpha for global directions, residual
    scale for the mapper, and for optimization a multiplier of the CLIP term."""

    target: str = ""
    neutral: str = "a face"
    strength: float = 1.0
    image: Optional[torch.Tensor] = field(default=None, compare=False)

    def __post_init__(self):
        if self.image is not None:
            if not isinstance(self.image, torch.Tensor) or self.image.ndim != 4 or self.image.shape[:2] != (1, 3):
                shape = list(self.image.shape) if isinstance(self.image, torch.Tensor) else type(self.image).__name__
                raise ValueError(f"a target image must be a tensor [1,3,H,W] in [-1,1], got {shape}")
            if not isinstance(self.target, str):
                raise ValueError("the prompt text must be a string")
            self._check_text_and_strength()
            return
        if not isinstance(self.target, str) or not self.target.strip():
            raise InputError("the prompt is empty: say what to edit toward, e.g. --prompt 'mohawk' "
                             "(or give --target-image)")
        self._check_text_and_strength()

    def _check_text_and_strength(self):
        for name, text in (("prompt", self.target), ("neutral text", self.neutral)):
            if not isinstance(text, str) or len(text) > MAX_PROMPT_CHARS:
                raise InputError(f"the {name} must be text of at most {MAX_PROMPT_CHARS} characters")
        if isinstance(self.strength, bool) or not isinstance(self.strength, numbers.Real) \
                or not math.isfinite(self.strength) or abs(self.strength) > 100:
            raise InputError(f"the edit strength must be a finite number in [-100, 100], got {self.strength!r}")

    @property
    def label(self) -> str:
        """The text, or 'target image' for an image prompt without one."""
        return self.target.strip() or "target image"


@dataclass(frozen=True)
class EditResult:
    """An edit: img [N,3,H,W] in [-1,1], the edited latent (w_plus, or styles for S-space edits), metrics."""

    image: torch.Tensor
    latent: torch.Tensor | list[torch.Tensor]
    engine: str
    metrics: dict = field(default_factory=dict)
    source_image: Optional[torch.Tensor] = None
    frames: tuple = ()
