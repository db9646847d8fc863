"""Text direction delta_t and style-space direction delta_s (STYLECLIP_SPEC 3.4-3.5), beta and its choice."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from styleclip.errors import InputError
from styleclip.stylespace.relevance import Relevance
from styleclip.stylespace.stats import StyleStats

AUTO_BETAS = tuple(round(0.10 + 0.01 * i, 2) for i in range(20))  # 0.10 ... 0.29


def text_direction(clip, neutral: str, target: str, templates: Sequence[str] | None = None) -> torch.Tensor:
    """delta_t [D]: unit(t_target - t_neutral), each text averaged over the 79 ImageNet templates (SPEC 3.4)."""
    from styleclip.encoders.clip import imagenet_templates

    if templates is None:
        templates = imagenet_templates()
    t = clip.encode_text([neutral, target], templates)
    diff = t[1] - t[0]
    if diff.norm() < 1e-8:
        raise InputError(f"neutral and target text give the same embedding ({neutral!r} -> {target!r})")
    return F.normalize(diff, dim=-1)


def channel_scores(relevance: Relevance, delta_t: torch.Tensor) -> torch.Tensor:
    """r = fs3 . delta_t, one cosine per relevance row."""
    return relevance.fs3 @ delta_t.to(relevance.fs3)


def count_kept(relevance: Relevance, delta_t: torch.Tensor, beta: float) -> int:
    return int((channel_scores(relevance, delta_t).abs() >= beta).sum())


def auto_beta(relevance: Relevance, delta_t: torch.Tensor, *, k: int = 20, betas: Sequence[float] = AUTO_BETAS,
              fallback: float = 0.1) -> float:
    """The GUI's auto-beta: the largest beta in {0.10, ..., 0.29} keeping more than k channels, else 0.1."""
    r = channel_scores(relevance, delta_t).abs()
    for beta in sorted(betas, reverse=True):
        if int((r >= beta).sum()) > k:
            return float(beta)
    return fallback


def decorrelated_scores(relevance: Relevance, delta_t: torch.Tensor, ridge: float) -> torch.Tensor:
    """Channel scores a = fs3 (fs3^T fs3 + ridge * lambda_max I)^-1 delta_t, scaled to max|fs3 . delta_t|: the
    ridge least-squares weights whose combined image change sum_c a_c fs3_c points along delta_t. The paper's
    r = fs3 . delta_t is the limit ridge -> inf; there many channels sharing one CLIP direction (a smile's) all
    score high and crowd out the other part of a compound prompt ("smiling ... with a mohawk")."""
    u = relevance.fs3.double()
    gram = u.T @ u
    lam = float(ridge) * float(torch.linalg.eigvalsh(gram)[-1])
    a = u @ torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device),
                               delta_t.to(u))
    r = u @ delta_t.to(u)
    return (a * (r.abs().max() / a.abs().max().clamp_min(1e-30))).to(relevance.fs3.dtype)


def delta_s(g, relevance: Relevance, stats: StyleStats, delta_t: torch.Tensor, beta: float, *,
            ridge: float | None = None, identity_cost: torch.Tensor | None = None,
            identity_damping: float | None = None) -> tuple[list[torch.Tensor], int]:
    """(delta_s per entry of g.layers, channels kept) as SPEC 3.5: r = fs3 . delta_t; |r| < beta -> 0;
    r / max|r|; times the channel std; zero on toRGB layers and on layers without relevance.

    Extensions (off by default, the paper's direction then bit for bit): `ridge` scores the kept channels by
    `decorrelated_scores` instead of r; `identity_cost` [rows] (styleclip.stylespace.identity_cost) with
    `identity_damping` q0 divides each score by (1 + q_c / q0) before the normalisation."""
    r = channel_scores(relevance, delta_t)
    keep = r.abs() >= beta
    kept = int(keep.sum())
    if kept == 0:
        raise InputError(f"beta too high: beta = {beta:g} keeps no channel; only {kept} channels have "
                         f"|r| >= {beta:g} (largest |r| is {float(r.abs().max()):.3f}); lower beta")
    if ridge is not None:
        r = decorrelated_scores(relevance, delta_t, ridge)
    r = torch.where(keep, r, torch.zeros_like(r))
    if identity_damping is not None and identity_cost is not None:
        r = r / (1 + identity_cost.to(r) / identity_damping)
    if float(r.abs().max()) == 0:
        raise InputError("the direction scores no kept channel (every kept score is zero); lower beta")
    r = r / r.abs().max()
    out = [stats.std[layer.index].new_zeros(layer.channels) for layer in g.layers]
    row = 0
    for k in relevance.layers:
        c = g.layers[k].channels
        out[k] = r[row: row + c].to(stats.std[k]) * stats.std[k]
        row += c
    return out, kept


def apply_direction(styles: list[torch.Tensor], direction: list[torch.Tensor], alpha: float) -> list[torch.Tensor]:
    """s + alpha * delta_s on every layer (direction [C_i] broadcast over the batch)."""
    return [s + alpha * ds.to(s).unsqueeze(0) for s, ds in zip(styles, direction)]

