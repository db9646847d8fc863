"""The latent mapper engine: a trained LevelsMapper applied to W+ latents (SPEC 2.1).

The engine takes a built mapper (with what its file says about it); mapper files, their formats and their
lookup by prompt live in the store (`styleclip.store.mappers`), and `factory.create_editor("mapper", ...)`
reads them.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from styleclip.errors import InputError
from styleclip.losses import clip_loss
from styleclip.nets.mapper import LevelsMapper
from styleclip.types import EditResult, Latent, ProgressFn, Prompt
from styleclip.editors.auto_strength import AutoStrengthConfig, pick_strengths
from styleclip.editors.base import check_fits_generator, register_engine, report, unpack_mapper
from styleclip.util.names import normalize_name


@dataclass(frozen=True)
class MapperConfig:
    """mapper: a LevelsMapper or a loaded mapper file (`store.mappers.MapperFile`; the factory reads a path,
    prompt or official name). Edit: w_hat = w + residual_scale * Prompt.strength * M(w) (SPEC 2.1: 0.1)."""

    mapper: Any = None
    residual_scale: float = 0.1
    batch_size: int = 4
    noise_mode: str = "const"
    metrics: bool = True  # render the source too and report CLIP / identity similarity
    auto: bool = False  # pick the strength per face (auto_strength), judged along the prompt's image direction
    auto_strength: AutoStrengthConfig = field(default_factory=AutoStrengthConfig)
    gain_fraction: float = 0.6  # auto: target gain = this x how far matching faces lie from others


@register_engine("mapper")
class MapperEditor:
    """Applies a trained latent mapper to W+ latents: one forward pass, no optimisation."""

    name = "mapper"
    config_class = MapperConfig

    def __init__(self, generator, clip=None, identity=None, *, config: MapperConfig = MapperConfig()):
        self.generator, self.clip, self.identity, self.config = generator, clip, identity, config
        if config.mapper is None:
            raise InputError("the mapper engine needs a mapper: a file, a trained prompt or an official name")
        m, self.info = unpack_mapper(config.mapper)
        if not isinstance(m, LevelsMapper):
            raise TypeError(f"config.mapper must be a LevelsMapper or a loaded mapper file, got {type(m).__name__} "
                            "(files, prompts and official names are read by factory.create_editor)")
        check_fits_generator(m, generator, "mapper")
        dev = generator.w_avg.device
        self.mapper = m.to(dev).eval().requires_grad_(False)

    @property
    def prompt(self) -> str | None:
        return self.info.get("prompt")

    @torch.no_grad()
    def edit_latent(self, w_plus: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """w_hat = w + residual_scale * strength * M(w) for w_plus [N,num_ws,D]."""
        w = w_plus.to(self.generator.w_avg.device, torch.float32)
        return w + self.config.residual_scale * strength * self.mapper(w)

    @torch.no_grad()
    def edit(self, latent: Latent, prompt: Prompt | None = None, *, progress: ProgressFn | None = None) -> EditResult:
        g, cfg = self.generator, self.config
        if latent.styles is not None:
            raise InputError("a mapper edits W+ latents; this latent is in S space (a global or --space styles "
                             "edit); edit it with --engine global or optimize --space styles")
        w_all = latent.w_plus
        if w_all.shape[1:] != (g.num_ws, g.config.style_dim):
            raise InputError(f"latent must be [N,{g.num_ws},{g.config.style_dim}], got {list(w_all.shape)}")
        strength = prompt.strength if prompt is not None else 1.0
        text = prompt.target if prompt is not None else self.prompt
        if prompt is not None and self.prompt and \
                f"_{normalize_name(prompt.target)}_" not in f"_{normalize_name(self.prompt)}_":
            warnings.warn(f"this mapper was trained for {self.prompt!r}, not {prompt.target!r}; "
                          "metrics use the given prompt", stacklevel=2)
        if prompt is not None and prompt.image is not None:
            raise InputError("a per-prompt mapper edits toward the text it was trained for; use the universal "
                             "mapper for a target image")
        n = w_all.shape[0]
        imgs, srcs, w_hats, before, after, ident, chosen, reached = [], [], [], [], [], [], [], []
        text_emb = self.clip.encode_text(text) if (cfg.metrics and self.clip is not None and text) else None
        auto = self._auto_target(text) if cfg.auto else None
        for i in range(0, n, max(1, cfg.batch_size)):
            w = w_all[i:i + cfg.batch_size].to(g.w_avg.device, torch.float32)
            if auto is not None:
                residual = self.config.residual_scale * self.mapper(w)
                src = g.synthesis(w, noise_mode=cfg.noise_mode)
                s, img, info = pick_strengths(
                    lambda s: g.synthesis(w + s.view(-1, 1, 1) * residual, noise_mode=cfg.noise_mode),
                    clip=self.clip, identity=self.identity, source_img=src, direction=auto[0],
                    target_gain=auto[1], config=cfg.auto_strength, base=strength)
                w_hat = w + s.view(-1, 1, 1) * residual
                chosen += s.tolist()
                reached += info.get("gain_reached", [])
            else:
                w_hat = self.edit_latent(w, strength)
                img = g.synthesis(w_hat, noise_mode=cfg.noise_mode)
            imgs.append(img)
            w_hats.append(w_hat)
            if cfg.metrics:
                src = g.synthesis(w, noise_mode=cfg.noise_mode)
                srcs.append(src)
                if text_emb is not None:
                    before += (1 - clip_loss(self.clip.encode_image(src), text_emb)).tolist()
                    after += (1 - clip_loss(self.clip.encode_image(img), text_emb)).tolist()
                if self.identity is not None:
                    ident += (self.identity.embed(img) * self.identity.embed(src)).sum(-1).tolist()
            report(progress, min(i + cfg.batch_size, n), n)
        metrics: dict = {"residual_scale": cfg.residual_scale * strength}
        if chosen:
            metrics.update(strength=chosen, **({"gain_reached": reached} if reached else {}))
        if before:
            metrics.update(clip_before=before, clip_after=after)
        if ident:
            metrics["identity_similarity"] = ident
        return EditResult(image=torch.cat(imgs), latent=torch.cat(w_hats), engine=self.name, metrics=metrics,
                          source_image=torch.cat(srcs) if srcs else None)


    def _auto_target(self, text: str | None) -> tuple[torch.Tensor, float]:
        """(unit image-side direction, target gain) of the mapper's prompt for auto strength."""
        from styleclip.encoders import targets as idir

        if self.clip is None or not text:
            raise InputError("auto strength needs a CLIP model and a prompt")
        d, raw = idir.prompt_direction(self.clip, idir.face_bank(self.generator, self.clip), text)
        return d, float(raw @ d) * self.config.gain_fraction


__all__ = ["MapperEditor", "MapperConfig"]
