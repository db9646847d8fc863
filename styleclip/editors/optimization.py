"""Engine 1: CLIP-guided latent optimization (STYLECLIP_SPEC 1).

Minimises  strength * (1 - cos(CLIP(G(w)), t)) + l2_lambda * sum((w - w_s)^2) + id_lambda * (1 - <R(G(w)), R(G(w_s))>)
over W+ (all rows) with Adam and the official warm-up / cosine ramp-down schedule, fixed noise. With
`clip_views` K > 0 the CLIP term scores the mean embedding of K randomly shifted copies (styleclip.encoders.views).
Only the latent gets gradients: generator, CLIP and identity net are frozen, the text is embedded once and
the source image's identity embedding is computed once. With `init` "universal" the latent starts at the
universal mapper's edit instead of the source (CLIP alone drifts toward changes only CLIP sees; started from an
edit the mapper learned on real image differences, it refines one): toy-faces good edits 0.79 -> 0.89.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from styleclip.encoders import targets as idir
from styleclip.encoders.views import view_embedding, view_offsets
from styleclip.errors import InputError, NumericalError
from styleclip.losses import clip_loss, identity_loss, latent_l2
from styleclip.types import EditResult, Latent, ProgressFn, Prompt
from styleclip.editors.base import register_engine, report


@dataclass(frozen=True)
class OptimizationConfig:
    steps: int = 300
    lr: float = 0.1
    l2_lambda: float = 0.008
    id_lambda: float = 0.005  # notebook default; ignored when no identity net is loaded
    mode: str = "edit"  # "edit" | "free_generation" (start from the mean latent, CLIP loss only)
    space: str = "wplus"  # "wplus" | "styles" (optimise the non-toRGB style vectors of S)
    rampdown: float = 0.25  # cosine ramp-down over the last 25 % of steps
    rampup: float = 0.05  # linear warm-up over the first 5 %
    frame_every: int = 0  # keep an image every k steps (0: none)
    bf16: bool = False  # bfloat16 autocast for generator and CLIP forward/backward
    checkpoint_min_res: int | None = None  # recompute blocks >= this resolution in backward (less memory)
    compile: bool = False  # torch.compile the step (CUDA: with CUDA graphs); the first step compiles (minutes)
    direction: str = "text"  # "text": CLIP target t (the paper); "image": unit(e(source) + the prompt's
    # image-side shift: how the mean embedding of generated faces that match it differs from the others)
    clip_views: int = 0  # 0: CLIP scores the rendered image (the paper); K: the mean embedding of K copies shifted
    clip_shift: float = 0.125  # by up to this fraction of the size (styleclip.encoders.views: against adversarial edits)
    seed: int = 0  # of the shifts: an edit is reproducible
    # where the optimization starts (mode "edit"): "source" (the paper), or "universal": the universal mapper's
    # whole W+ edit toward the prompt (`init_mapper`, its change floored at `init_min_change`: the factory builds
    # that engine and hands it over as `start`); the L2 term still measures the distance to the source
    init: str = "source"
    init_mapper: Any = "universal"
    init_min_change: float = 0.0

    def __post_init__(self):
        from styleclip.util.checks import integer, number

        integer(self.steps, "steps", 1, 1_000_000)
        number(self.lr, "lr", lo=0.0, hi=10.0)  # 0 leaves the latent as it is (a round trip)
        number(self.l2_lambda, "l2_lambda", lo=0.0, hi=1e4)
        number(self.id_lambda, "id_lambda", lo=0.0, hi=1e4)
        integer(self.frame_every, "frame_every", 0, 1_000_000)
        integer(self.clip_views, "clip_views", 0, 64)
        number(self.clip_shift, "clip_shift", lo=0.0, hi=0.5)
        integer(self.seed, "seed", 0, 2**63 - 1)
        if self.mode not in ("edit", "free_generation"):
            raise InputError(f"mode must be 'edit' or 'free_generation', got {self.mode!r}")
        if self.space not in ("wplus", "styles"):
            raise InputError(f"space must be 'wplus' or 'styles', got {self.space!r}")
        if self.init not in ("source", "universal"):
            raise InputError(f"init must be 'source' or 'universal', got {self.init!r}")
        number(self.init_min_change, "init_min_change", lo=0.0, hi=1e6)
        if self.direction not in ("text", "image"):
            raise InputError(f"direction must be 'text' or 'image', got {self.direction!r}")
        if self.steps < 1:
            raise ValueError("steps must be at least 1")


def learning_rate(step: int, steps: int, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """Official schedule: lr * (0.5 - 0.5 cos(pi * min(1, (1 - t) / rampdown))) * min(1, t / rampup)."""
    t = step / steps
    ramp = min(1.0, (1 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, t / rampup)
    return lr * ramp


@register_engine("optimize")
class OptimizationEditor:
    """Latent optimization in W+ (or S) toward a text prompt."""

    name = "optimize"
    config_class = OptimizationConfig

    def __init__(self, generator, clip, identity=None, *, config: OptimizationConfig = OptimizationConfig(),
                 start=None):
        """start: with init "universal", the universal mapper engine whose edit is the starting point
        (anything with `directions(prompt, img)` and `change(w, d)`; `factory.create_editor` builds it)."""
        self.generator = generator
        self.clip = clip
        self.identity = identity
        self.config = config
        self._losses: dict[str, torch.Tensor] = {}  # the latest step's, kept on the device
        self._compiled = None  # torch.compile of _objective (config.compile)
        if config.compile:
            from styleclip.util.runtime import compile_backend_missing

            missing = compile_backend_missing(generator.w_avg.device)
            if missing:
                raise InputError(f"--compile needs {missing}; install it or run without --compile")
        self.start = None  # the universal mapper editor that gives the starting point (init "universal")
        if config.init == "universal" and config.mode == "edit":
            if start is None:
                raise InputError("init 'universal' starts from the universal mapper's edit: build the engine with "
                                 "factory.create_editor('optimize', ...), which loads that mapper")
            self.start = start

    @property
    def last_losses(self) -> dict[str, float]:
        """The latest step's losses (batch means), for progress displays; reading them waits for the device."""
        return {k: float(v) for k, v in self._losses.items()}

    def edit(self, latent: Latent, prompt: Prompt, *, progress: ProgressFn | None = None) -> EditResult:
        cfg, g = self.config, self.generator
        device = g.w_avg.device
        s_given = None
        if latent.styles is not None:  # an S-space latent: only S-space optimization can start from it
            if cfg.space != "styles" or cfg.mode != "edit":
                raise InputError("this latent is in S space (a global or --space styles edit): optimize it with "
                                 "--space styles, or start from a W+ latent")
            s_given = [x.to(device, torch.float32) for x in latent.styles]
            w_source = g.broadcast(g.w_avg.unsqueeze(0)).expand(latent.batch_size, -1, -1)  # unused but for shape
        else:
            w_source = latent.w_plus.to(device, torch.float32)
        if w_source.shape[1:] != (g.num_ws, g.config.style_dim):
            raise ValueError(f"latent has shape {list(w_source.shape)}, expected [N,{g.num_ws},"
                             f"{g.config.style_dim}] for this generator")
        if cfg.mode == "free_generation":
            w_source = g.broadcast(g.w_avg.unsqueeze(0)).expand(w_source.shape[0], -1, -1).clone()
        use_id = self.identity is not None and cfg.id_lambda > 0 and cfg.mode == "edit"

        with torch.no_grad(), self._autocast():
            img_source = (g.synthesis(w_source) if s_given is None else g.synthesis_from_styles(s_given)).float()
            text = self.target_embedding(prompt, img_source)
            clip_before = (self.clip.encode_image(img_source) * text).sum(-1)
            id_source = self.identity.embed(img_source) if self.identity is not None else None

        w_start = self._start_latent(w_source, img_source, prompt, s_given) if self.start is not None else w_source
        if cfg.space == "styles":
            with torch.no_grad():
                s_source = g.styles(w_source) if s_given is None else s_given
                s_start = s_source if w_start is w_source else g.styles(w_start)
            # toRGB styles stay fixed: only the conv layers' styles get gradients
            variables = [s.clone().requires_grad_(layer.kind == "conv") for s, layer in zip(s_start, g.layers)]
            sources = s_source
        else:
            variables, sources = [w_start.clone().requires_grad_(True)], [w_source]
        params = [v for v in variables if v.requires_grad]

        opt = torch.optim.Adam(params, lr=cfg.lr)
        shifts = torch.Generator().manual_seed(cfg.seed)  # the CLIP views' offsets (the edit's seed)
        objective = self._compiled_objective() if cfg.compile else self._objective
        id_target = id_source if use_id else None
        strength = torch.tensor(float(prompt.strength), device=device)  # a tensor: the compiled step takes any
        frames = []
        nonfinite = None  # checked on the host every step on a CPU, every 25 steps elsewhere: no sync per step
        for step in range(cfg.steps):
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, cfg.steps, cfg.lr, cfg.rampdown, cfg.rampup)
            offsets = view_offsets(cfg.clip_views, cfg.clip_shift, *img_source.shape[2:], shifts)
            if offsets is not None and cfg.compile:  # a compiled step's inputs live on its device (CUDA graphs)
                offsets = offsets.to(device)
            img, loss, terms = objective(variables, sources, text, id_target, strength, offsets)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # samples are independent: Adam is element-wise
            opt.step()
            bad = ~torch.isfinite(loss.detach()).all()
            nonfinite = bad if nonfinite is None else nonfinite | bad
            if (device.type == "cpu" or step % 25 == 24 or step == cfg.steps - 1) and nonfinite:
                raise NumericalError(f"the loss became NaN/inf by step {step}; lower --lr or the lambdas")
            self._losses = {k: v.detach().mean() for k, v in terms.items()}
            self._losses["total"] = loss.detach().mean()
            if cfg.frame_every and step % cfg.frame_every == 0:
                frames.append(img.detach().float().cpu())
            report(progress, step + 1, cfg.steps)

        with torch.no_grad(), self._autocast():
            img = self._render(variables).float()
            metrics = {"clip_before": clip_before.tolist(),
                       "clip_after": (self.clip.encode_image(img) * text).sum(-1).tolist()}
            if id_source is not None:
                metrics["identity_similarity"] = (self.identity.embed(img) * id_source).sum(-1).tolist()
        metrics["final_losses"] = self.last_losses
        if cfg.frame_every:
            frames.append(img.cpu())
        edited = [v.detach() for v in variables] if cfg.space == "styles" else variables[0].detach()
        return EditResult(image=img, latent=edited, engine=self.name, metrics=metrics, source_image=img_source,
                          frames=tuple(frames))

    def _render(self, variables: list[torch.Tensor]) -> torch.Tensor:
        g, cfg = self.generator, self.config
        if cfg.space == "styles":
            return g.synthesis_from_styles(variables, checkpoint_min_res=cfg.checkpoint_min_res)
        return g.synthesis(variables[0], checkpoint_min_res=cfg.checkpoint_min_res)

    def _objective(self, variables, sources, text, id_source, strength: torch.Tensor, offsets=None):
        """One step's image, loss [N] and its terms: CLIP (of the views at `offsets`, or of the image when None),
        L2 to the source (edit mode), identity (id_source)."""
        cfg = self.config
        with self._autocast():
            img = self._render(variables)
            c_loss = clip_loss(view_embedding(self.clip, img, offsets, cfg.clip_shift),
                               text) * strength
            loss, terms = c_loss, {"clip": c_loss}
            if cfg.mode == "edit":
                l2_term = sum(latent_l2(v, s) for v, s in zip(variables, sources) if v.requires_grad)
                loss = loss + cfg.l2_lambda * l2_term
                terms["l2"] = l2_term
            if id_source is not None:
                i_loss = identity_loss(self.identity.embed(img.float()), id_source)
                loss = loss + cfg.id_lambda * i_loss
                terms["id"] = i_loss
        return img, loss, terms

    def _compiled_objective(self):
        """`_objective` through torch.compile (kept for the editor's later edits; the first step compiles)."""
        if self._compiled is None:
            import logging

            # inductor loads torch.utils.cpp_extension, which warns on a CPU-only machine that it found no CUDA
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            device = self.generator.w_avg.device
            # CUDA: CUDA graphs replay the whole step's kernels with one launch (the step is launch-bound)
            self._compiled = torch.compile(self._objective,
                                           mode="reduce-overhead" if device.type == "cuda" else None)
        return self._compiled

    @torch.no_grad()
    def _start_latent(self, w_source, img_source, prompt: Prompt, s_given) -> torch.Tensor:
        """init "universal": the source plus the universal mapper's W+ change toward the prompt (text or image)."""
        if s_given is not None:
            raise InputError("--init universal starts from the universal mapper's W+ edit: give a W+ latent, not an "
                             "S-space one (or use --init source)")
        d, _, _ = self.start.directions(prompt, img_source)
        return w_source + self.start.change(w_source, d)

    @torch.no_grad()
    def target_embedding(self, prompt: Prompt, img_source: torch.Tensor) -> torch.Tensor:
        """Unit CLIP target [1,E] or [N,E]: the reference image's embedding, the text's, or (direction
        'image') each source's embedding shifted along the prompt's image-side direction."""
        if prompt.image is not None:
            return idir.reference_embedding(self.clip, prompt.image)
        if self.config.direction == "image" and self.config.mode == "edit":
            _, shift = idir.prompt_direction(self.clip, idir.face_bank(self.generator, self.clip), prompt.target,
                                             prompt.neutral)
            return F.normalize(self.clip.encode_image(img_source).float() + shift, dim=-1)
        return self.clip.encode_text([prompt.target])

    def _autocast(self):
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.generator.w_avg.device.type, dtype=torch.bfloat16)
