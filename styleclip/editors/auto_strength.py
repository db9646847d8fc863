"""Auto strength: per face, the smallest strength whose edit reaches the CLIP gain while the identity holds
(target "gain"), or the strongest candidate the identity net still reads as the same person (target
"identity": an identity budget, with candidates up to 1 x the strength asked for).

Shared by the engines whose edit has a strength knob (global: alpha; mappers: the residual multiplier).
`render(strengths [N]) -> img [N,3,H,W]` makes the edits; the CLIP gain of an edit is how far its image
embedding moved along the prompt's unit direction, (e(edit) - e(source)) . d, and it is reached at
`target_gain`. Candidates are tried in increasing order; a face keeps the first strength that reaches the
gain with identity similarity >= `identity_threshold`; where identity would fail first, the last strength
that kept it; where nothing reaches the gain, the largest candidate that kept identity (the smallest
candidate when none keeps it). Target "identity" never stops at a gain: a face keeps the last candidate
that kept its identity.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


BUDGET_CANDIDATES = (0.25, 0.5, 0.75, 1.0)  # target "identity": never stronger than the strength asked for


@dataclass(frozen=True)
class AutoStrengthConfig:
    """candidates: multipliers of the engine's strength tried in order; identity_threshold: the identity
    net's verification threshold (cosine at or above it: same person); gain_scale: multiplies the target
    gain the engine computes; target: "gain" or "identity" (see the module docstring)."""

    candidates: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0)
    identity_threshold: float = 0.5
    gain_scale: float = 1.0
    target: str = "gain"

    def __post_init__(self):
        if self.target not in ("gain", "identity"):
            raise ValueError(f"auto-strength target must be 'gain' or 'identity', got {self.target!r}")
        if not self.candidates or any(c <= 0 for c in self.candidates) or list(self.candidates) != sorted(
                self.candidates):
            raise ValueError("auto-strength candidates must be positive and increasing")


@torch.no_grad()
def pick_strengths(render: Callable[[torch.Tensor], torch.Tensor], *, clip, identity, source_img: torch.Tensor,
                   direction: torch.Tensor, target_gain: float | torch.Tensor, config: AutoStrengthConfig,
                   base: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(strengths [N], edited img [N,...], info) choosing a strength per face (see the module docstring).

    direction: unit [E] or [N,E]; target_gain: a float or [N]; base multiplies every candidate."""
    n = source_img.shape[0]
    dev = source_img.device
    e_src = clip.encode_image(source_img)
    d = direction.to(e_src).expand(n, -1) if direction.ndim == 1 else direction.to(e_src)
    by_gain = config.target == "gain"
    goal = torch.as_tensor(target_gain if by_gain else 0.0, dtype=e_src.dtype, device=e_src.device
                           ).expand(n) * config.gain_scale
    id_src = identity.embed(source_img) if identity is not None else None
    chosen = torch.full((n,), float(config.candidates[0]) * base, device=dev)
    best = None
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    reached = torch.zeros(n, dtype=torch.bool, device=dev)
    gains = torch.zeros(n, device=dev)
    sims = torch.ones(n, device=dev)
    for c in config.candidates:
        s = torch.full((n,), float(c) * base, device=dev)
        img = render(s)
        if best is None:
            best = img.clone()
        gain = ((clip.encode_image(img) - e_src) * d).sum(-1)
        sim = (identity.embed(img) * id_src).sum(-1) if id_src is not None else torch.ones(n, device=dev)
        ok = sim >= config.identity_threshold
        first = c == config.candidates[0]
        take = ~done & (ok | first)  # the smallest candidate is the fallback when none keeps identity
        chosen = torch.where(take, s, chosen)
        best[take] = img[take]
        gains, sims = torch.where(take, gain, gains), torch.where(take, sim, sims)
        hit = take & ok & (gain >= goal) if by_gain else torch.zeros_like(ok)
        reached |= hit
        done |= hit | ~ok
        if bool(done.all()):
            break
    info = {"strength": chosen.tolist(), "clip_gain": gains.tolist(), "identity_similarity": sims.tolist()}
    if by_gain:
        info.update(gain_reached=reached.tolist(), target_gain=goal.tolist())
    return chosen, best, info
