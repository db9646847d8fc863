"""Global directions in style space (StyleCLIP method 3): text -> delta_s, then s + alpha * delta_s."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from styleclip.encoders import targets as idir
from styleclip.stylespace.directions import apply_direction, auto_beta, delta_s, text_direction
from styleclip.stylespace.identity_cost import IdentityCost
from styleclip.stylespace.relevance import Relevance, clip_dim
from styleclip.stylespace.stats import StyleStats
from styleclip.errors import CheckpointError, StyleClipError
from styleclip.types import EditResult, Latent, ProgressFn, Prompt
from styleclip.editors.auto_strength import AutoStrengthConfig, pick_strengths
from styleclip.editors.base import register_engine, report

NOTEBOOK_ALPHA = 4.1  # Colab notebooks / cog demo default strength (SPEC 3.6)


@dataclass(frozen=True)
class GlobalDirectionsConfig:
    """beta: disentanglement threshold on |fs3 . delta_t| (None: the GUI's auto-beta keeping > auto_beta_k
    channels). alpha: strength; None takes `Prompt.strength` (the notebooks use 4.1 = NOTEBOOK_ALPHA).
    stats / relevance: the StyleStats and Relevance of the generator (the factory finds, reads or computes
    them: `store.stylespace_files.global_direction_inputs`).
    ridge / identity_damping: optional refinements of delta_s (`stylespace.directions.delta_s`; None: the
    paper's): decorrelated channel scores, and channels that change the person held back by their identity
    cost (`identity_cost`: an IdentityCost, needed with identity_damping)."""

    beta: float | None = 0.15
    alpha: float | None = None
    auto_beta_k: int = 20
    stats: object = field(default=None, compare=False)
    relevance: object = field(default=None, compare=False)
    templates: tuple[str, ...] | None = None  # None: the 79 ImageNet templates
    with_source: bool = True  # also synthesise the unedited image (for clip_before)
    direction: str = "text"  # "text": the paper's delta_t; "image": the prompt's image-side direction
    auto: bool = False  # pick alpha per face (auto_strength: multiples of the prompt's alpha)
    auto_strength: AutoStrengthConfig = field(default_factory=AutoStrengthConfig)
    gain_fraction: float = 0.6  # auto: target gain = this x how far matching faces lie from others along delta_t
    ridge: float | None = None
    identity_damping: float | None = None
    identity_cost: object = field(default=None, compare=False)

    def __post_init__(self):
        from styleclip.util.checks import integer, number

        if self.direction not in ("text", "image"):
            raise ValueError(f"direction must be 'text' or 'image', got {self.direction!r}")
        if self.beta is not None:
            number(self.beta, "beta", lo=0.0, hi=1.0)
        if self.alpha is not None:
            number(self.alpha, "alpha", lo=-100.0, hi=100.0)
        integer(self.auto_beta_k, "auto_beta_k", 1, 100_000)
        if self.ridge is not None:
            number(self.ridge, "ridge", lo=1e-6, hi=1e6)
        if self.identity_damping is not None:
            number(self.identity_damping, "identity_damping", lo=1e-9, hi=1e6)


@register_engine("global")
class GlobalDirectionsEditor:
    """Edit = W+ -> S, s + alpha * delta_s on every layer, one synthesis."""

    name = "global"
    config_class = GlobalDirectionsConfig

    def __init__(self, generator, clip, identity=None, *, config: GlobalDirectionsConfig = GlobalDirectionsConfig()):
        self.generator, self.clip, self.identity, self.config = generator, clip, identity, config
        g = generator
        if not isinstance(config.stats, StyleStats) or not isinstance(config.relevance, Relevance):
            raise TypeError("GlobalDirectionsConfig needs stats (a StyleStats) and relevance (a Relevance); "
                            "styleclip.factory.create_editor('global', ...) finds, reads or computes them")
        self.stats, self.relevance = config.stats, config.relevance
        self.stats.check(g)
        d = clip_dim(clip)
        if self.relevance.fs3.shape[1] != d:
            raise CheckpointError(f"the channel relevance has {self.relevance.fs3.shape[1]} columns, but this CLIP "
                                  f"embeds in {d} dimensions (computed for another CLIP model?)")
        self.identity_cost, self._identity_rows = None, None
        if config.identity_damping is not None:
            if not isinstance(config.identity_cost, IdentityCost):
                raise StyleClipError("identity damping needs the identity cost of the style channels (an "
                                     "IdentityCost; the factory finds or computes it with the identity net)")
            self.identity_cost = config.identity_cost
            self._identity_rows = self.identity_cost.rows_for(self.relevance, g)
        self._directions: dict[tuple, tuple[list[torch.Tensor], int, float]] = {}

    # ---- directions -------------------------------------------------------------------------------
    def text_direction(self, neutral: str, target: str) -> torch.Tensor:
        """delta_t [E]: the paper's text direction, or with direction='image' the prompt's image-side one."""
        if self.config.direction == "image":
            return idir.image_direction(self.generator, self.clip, target, neutral)
        return text_direction(self.clip, neutral, target, self.config.templates)

    def direction(self, prompt: Prompt, beta: float | None = ..., *, delta_t: torch.Tensor | None = None
                  ) -> tuple[list[torch.Tensor], int, float]:
        """(delta_s per layer, channels kept, beta used) for a prompt; cached per (neutral, target, beta).
        An image prompt needs its `delta_t` (see `reference_direction`)."""
        beta = self.config.beta if beta is ... else beta
        key = (prompt.neutral, prompt.target, beta)
        if delta_t is not None or key not in self._directions:
            dt = delta_t if delta_t is not None else self.text_direction(prompt.neutral, prompt.target)
            b = auto_beta(self.relevance, dt, k=self.config.auto_beta_k) if beta is None else beta
            ds, kept = delta_s(self.generator, self.relevance, self.stats, dt, b, ridge=self.config.ridge,
                                  identity_cost=self._identity_rows,
                                  identity_damping=self.config.identity_damping)
            if delta_t is not None:
                return ds, kept, b
            self._directions[key] = (ds, kept, b)
        return self._directions[key]

    def reference_direction(self, prompt: Prompt, source_img: torch.Tensor) -> torch.Tensor:
        """delta_t of an image prompt: unit(e(reference) - mean e(sources))."""
        ref = idir.reference_embedding(self.clip, prompt.image)[0]
        return torch.nn.functional.normalize(ref - self.clip.encode_image(source_img).float().mean(0), dim=0)

    def alpha(self, prompt: Prompt) -> float:
        return float(prompt.strength if self.config.alpha is None else self.config.alpha)

    def combined_direction(self, prompts: Sequence[Prompt], source_img: torch.Tensor | None = None
                           ) -> tuple[list[torch.Tensor], dict]:
        """sum_j alpha_j * delta_s_j (each prompt with its own alpha) and per-prompt info; image prompts need
        the source images."""
        total = None
        info = []
        for p in prompts:
            if p.image is not None and source_img is None:
                raise StyleClipError("an image prompt needs the source images to take its direction from")
            dt = self.reference_direction(p, source_img) if p.image is not None else None
            ds, kept, beta = self.direction(p, delta_t=dt)
            a = self.alpha(p)
            total = [a * d for d in ds] if total is None else [t + a * d for t, d in zip(total, ds)]
            info.append({"target": p.label, "neutral": p.neutral, "alpha": a, "beta": beta,
                         "channels_kept": kept})
        return total, {"prompts": info}

    # ---- editing ----------------------------------------------------------------------------------
    @torch.no_grad()
    def edit_styles(self, styles: list[torch.Tensor], prompts: Prompt | Sequence[Prompt]) -> list[torch.Tensor]:
        prompts = [prompts] if isinstance(prompts, Prompt) else list(prompts)
        source = self.generator.synthesis_from_styles(styles) if any(p.image is not None for p in prompts) else None
        total, _ = self.combined_direction(prompts, source)
        return apply_direction(styles, total, 1.0)

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
        # separately, not batched with the edit: alpha = 0 then reproduces synthesis(w_plus) bit for bit
        need_source = self.config.with_source or self.config.auto or any(p.image is not None for p in prompts)
        source = g.synthesis_from_styles(styles) if need_source else None
        total, info = self.combined_direction(prompts, source)
        metrics = {"channels_kept": [p["channels_kept"] for p in info["prompts"]],
                   "beta": [p["beta"] for p in info["prompts"]], "alpha": [p["alpha"] for p in info["prompts"]]}
        if len(prompts) == 1:
            metrics = {k: v[0] for k, v in metrics.items()}
        if self.config.auto:
            if len(prompts) != 1:
                raise StyleClipError("auto strength works on one prompt at a time")
            edited, img, auto_info = self._auto_edit(prompts[0], styles, source)
            metrics.update(alpha=auto_info["strength"],
                           **{k: auto_info[k] for k in ("gain_reached",) if k in auto_info})
        else:
            edited = apply_direction(styles, total, 1.0)
            img = g.synthesis_from_styles(edited)
        targets = [idir.reference_embedding(self.clip, p.image) if p.image is not None
                   else self.clip.encode_text([p.target]) for p in prompts]
        text = torch.nn.functional.normalize(torch.cat(targets).float().mean(0, keepdim=True), dim=-1)
        metrics["clip_after"] = self.clip.similarity(img, text)[:, 0].tolist()
        if source is not None:
            metrics["clip_before"] = self.clip.similarity(source, text)[:, 0].tolist()
            if self.identity is not None:
                metrics["identity_similarity"] = (self.identity.embed(img) * self.identity.embed(source)
                                                  ).sum(-1).tolist()
        if not self.config.with_source:
            source = None
        report(progress, 1, 1)
        return EditResult(image=img, latent=edited, engine=self.name, metrics=metrics, source_image=source)

    def _auto_edit(self, prompt: Prompt, styles: list[torch.Tensor], source: torch.Tensor):
        """(edited styles, img, info) with alpha picked per face (`auto_strength`); the target gain is
        gain_fraction x the separation along delta_t of the bank faces that match the prompt from the rest
        (for an image prompt: of the reference from the sources)."""
        if prompt.image is not None:
            dt = self.reference_direction(prompt, source)
            ref = idir.reference_embedding(self.clip, prompt.image)[0]
            gain = (ref - self.clip.encode_image(source).float()) @ dt
        else:
            dt = self.text_direction(prompt.neutral, prompt.target)
            gain = 0.0  # an identity budget needs no gain target (nor the face bank it comes from)
            if self.config.auto_strength.target == "gain":
                _, raw = idir.prompt_direction(self.clip, idir.face_bank(self.generator, self.clip), prompt.target,
                                               prompt.neutral)
                gain = float(raw @ dt)
        ds, _, _ = self.direction(prompt, delta_t=dt if prompt.image is not None else None)

        def shifted(alphas):
            return [s + alphas.view(-1, 1).to(s) * d for s, d in zip(styles, ds)]

        def render(alphas):
            return self.generator.synthesis_from_styles(shifted(alphas))

        alphas, img, info = pick_strengths(render, clip=self.clip, identity=self.identity, source_img=source,
                                           direction=dt, target_gain=gain * self.config.gain_fraction,
                                           config=self.config.auto_strength, base=self.alpha(prompt))
        return shifted(alphas), img, info

