"""Global directions in style space (StyleCLIP method 3): text -> delta_s, then s + alpha * delta_s."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .. import stylespace as ss
from ..errors import StyleClipError
from ..types import EditResult, Latent, ProgressFn, Prompt
from .base import register_engine, report

NOTEBOOK_ALPHA = 4.1  # Colab notebooks / cog demo default strength (SPEC 3.6)


@dataclass(frozen=True)
class GlobalDirectionsConfig:
    """beta: disentanglement threshold on |fs3 . delta_t| (None: the GUI's auto-beta keeping > auto_beta_k
    channels). alpha: strength; None takes `Prompt.strength` (the notebooks use 4.1 = NOTEBOOK_ALPHA).
    stats / relevance: a StyleStats / Relevance object or a file path; None loads them from the cache or
    computes them (`relevance_method` 'exact' or 'fast'; automatic only for small generators)."""

    beta: float | None = 0.15
    alpha: float | None = None
    auto_beta_k: int = 20
    stats: object = field(default=None, compare=False)
    relevance: object = field(default=None, compare=False)
    relevance_method: str = "exact"
    compute_missing: bool | None = None  # None: compute only when the generator is small (<= 64 px)
    templates: tuple[str, ...] | None = None  # None: the 79 ImageNet templates
    with_source: bool = True  # also synthesise the unedited image (for clip_before)


@register_engine("global")
class GlobalDirectionsEditor:
    """Edit = W+ -> S, s + alpha * delta_s on every layer, one synthesis."""

    def __init__(self, generator, clip, identity=None, *, config: GlobalDirectionsConfig = GlobalDirectionsConfig(),
                 progress: ProgressFn | None = None):
        self.generator, self.clip, self.identity, self.config = generator, clip, identity, config
        g = generator
        self.stats = config.stats if isinstance(config.stats, ss.StyleStats) else ss.load_or_compute_stats(
            g, config.stats)
        self.stats.check(g)
        rel = config.relevance
        if isinstance(rel, ss.Relevance):
            self.relevance = rel
        elif rel is not None:
            self.relevance = ss.Relevance.load(rel, g)
        else:
            compute = config.compute_missing
            if compute is None:
                compute = g.config.size <= 64
            self.relevance = _cached_relevance(g, clip, self.stats, config.relevance_method, compute, progress)
        self._directions: dict[tuple, tuple[list[torch.Tensor], int, float]] = {}

    @classmethod
    def from_files(cls, generator, clip, *, relevance: str | Path | None = None, stats: str | Path | None = None,
                   identity=None, compute_missing: bool | None = None, progress: ProgressFn | None = None,
                   **config_kwargs) -> "GlobalDirectionsEditor":
        """Build from a generator + CLIP and optional files (an official fs3.npy works); what is missing is
        loaded from or computed into `pretrained.cache_dir()/stylespace`."""
        config = GlobalDirectionsConfig(stats=stats, relevance=relevance, compute_missing=compute_missing,
                                        **config_kwargs)
        return cls(generator, clip, identity, config=config, progress=progress)

    # ---- directions -------------------------------------------------------------------------------
    def text_direction(self, neutral: str, target: str) -> torch.Tensor:
        return ss.text_direction(self.clip, neutral, target, self.config.templates)

    def direction(self, prompt: Prompt, beta: float | None = ...) -> tuple[list[torch.Tensor], int, float]:
        """(delta_s per layer, channels kept, beta used) for a prompt; cached per (neutral, target, beta)."""
        beta = self.config.beta if beta is ... else beta
        key = (prompt.neutral, prompt.target, beta)
        if key not in self._directions:
            dt = self.text_direction(prompt.neutral, prompt.target)
            b = ss.auto_beta(self.relevance, dt, k=self.config.auto_beta_k) if beta is None else beta
            ds, kept = ss.delta_s(self.generator, self.relevance, self.stats, dt, b)
            self._directions[key] = (ds, kept, b)
        return self._directions[key]

    def alpha(self, prompt: Prompt) -> float:
        return float(prompt.strength if self.config.alpha is None else self.config.alpha)

    def combined_direction(self, prompts: Sequence[Prompt]) -> tuple[list[torch.Tensor], dict]:
        """sum_j alpha_j * delta_s_j (each prompt with its own alpha) and per-prompt info."""
        total = None
        info = []
        for p in prompts:
            ds, kept, beta = self.direction(p)
            a = self.alpha(p)
            total = [a * d for d in ds] if total is None else [t + a * d for t, d in zip(total, ds)]
            info.append({"target": p.target, "neutral": p.neutral, "alpha": a, "beta": beta,
                         "channels_kept": kept})
        return total, {"prompts": info}

    # ---- editing ----------------------------------------------------------------------------------
    @torch.no_grad()
    def edit_styles(self, styles: list[torch.Tensor], prompts: Prompt | Sequence[Prompt]) -> list[torch.Tensor]:
        prompts = [prompts] if isinstance(prompts, Prompt) else list(prompts)
        total, _ = self.combined_direction(prompts)
        return ss.apply_direction(styles, total, 1.0)

    def edit(self, latent: Latent, prompt: Prompt, *, progress: ProgressFn | None = None) -> EditResult:
        return self.edit_many(latent, [prompt], progress=progress)

    @torch.no_grad()
    def edit_many(self, latent: Latent, prompts: Sequence[Prompt], *,
                  progress: ProgressFn | None = None) -> EditResult:
        """Several prompts composed in one edit (sum of their directions, each with its own alpha)."""
        if not prompts:
            raise StyleClipError("no prompt given")
        g = self.generator
        report(progress, 0, 1)
        if latent.styles is not None:  # an S-space latent (e.g. a previous global edit): edits chain
            styles = [x.to(g.w_avg.device, torch.float32) for x in latent.styles]
        else:
            styles = g.styles(latent.w_plus.to(g.w_avg.device))
        total, info = self.combined_direction(prompts)
        edited = ss.apply_direction(styles, total, 1.0)
        img = g.synthesis_from_styles(edited)
        # separately, not batched with the edit: alpha = 0 then reproduces synthesis(w_plus) bit for bit
        source = g.synthesis_from_styles(styles) if self.config.with_source else None
        metrics = {"channels_kept": [p["channels_kept"] for p in info["prompts"]],
                   "beta": [p["beta"] for p in info["prompts"]], "alpha": [p["alpha"] for p in info["prompts"]]}
        if len(prompts) == 1:
            metrics = {k: v[0] for k, v in metrics.items()}
        text = self.clip.encode_text([p.target for p in prompts]).mean(0, keepdim=True)
        text = torch.nn.functional.normalize(text, dim=-1)
        metrics["clip_after"] = self.clip.similarity(img, text)[:, 0].tolist()
        if source is not None:
            metrics["clip_before"] = self.clip.similarity(source, text)[:, 0].tolist()
            if self.identity is not None:
                metrics["identity_similarity"] = (self.identity.embed(img) * self.identity.embed(source)
                                                  ).sum(-1).tolist()
        report(progress, 1, 1)
        return EditResult(image=img, latent=edited, engine=self.name, metrics=metrics, source_image=source)


def _cached_relevance(g, clip, stats, method: str, compute: bool, progress):
    return ss.load_or_compute_relevance(g, clip, stats, method=method, compute=compute, progress=progress)
