"""The web app's logic without the web: `StyleClipApp` loads the models once (shared, read-only) and answers
each user action with display images, files and a new per-user `Session`. No gradio here, so the logic is
tested directly; `styleclip/app/demo.py` only lays it out and wires it.

User mistakes raise `styleclip.errors.StyleClipError` / `ValueError` with a one-line message (the web layer
turns them into a gr.Error pop-up). Progress goes to an optional `report(done, total, message)`.
"""
from __future__ import annotations

import atexit
import dataclasses
import secrets
import shutil
import tempfile
import threading
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import torch
from PIL import Image

from styleclip import factory, models
from styleclip import stylespace as ss
from styleclip.pipelines import edit as plan
from styleclip.pipelines.bounds import check
from styleclip.errors import InputError, StyleClipError
from styleclip.util.imaging import from_pil, save_gif, to_pil, upscale_for_viewing
from styleclip.sources import save_latent
from styleclip.types import MAX_PROMPT_CHARS, Latent, Prompt

Report = Callable[[int, int, str], None]

VIEW_SIZE = 256  # tiny generators (debug: 32 px) are enlarged to this for display
SMALL_GENERATOR = 64  # up to this size the app prepares global-direction statistics itself, quickly
SMALL_STATS_SAMPLES = 10_000
SMALL_RELEVANCE_IMAGES = 4
DEFAULT_NEUTRAL = "a face"
SWEEP_FRAMES = 17
PHOTO_SIDE = 1024  # uploaded photos are kept (and edited) at most this large
KEEP_RESULTS = 500  # result folders kept on disk (the web layer serves copies from its own cache)


# Example prompts the page offers, per model set (from the records in styleclip.models): global rows
# [neutral, target] take the model's alpha and beta, [neutral, target, alpha, beta] give their own.
EXAMPLES = {name: {"global": [list(r) for r in m.examples.global_], "optimize": [list(r) for r in m.examples.optimize]}
            for name, m in models.MODEL_SETS.items()}


class GlobalEdit(NamedTuple):
    """One global-direction edit: s += alpha * delta_s(neutral -> target, beta)."""

    neutral: str
    target: str
    alpha: float
    beta: float


@dataclass(frozen=True)
class Session:
    """Per-user state (kept in gr.State), all on the CPU. `styles` and `source_clip` are caches of the source
    (S-space vectors, unit CLIP embedding) so a slider change costs one synthesis. Never mutated: updates
    make a new Session, so sessions cannot leak into each other."""

    w_plus: torch.Tensor  # [1,num_ws,D]
    label: str
    source: Image.Image  # the source image at the generator's resolution
    styles: Optional[tuple[torch.Tensor, ...]] = None
    source_clip: Optional[torch.Tensor] = None
    stack: tuple[GlobalEdit, ...] = ()
    aligned: Optional[Image.Image] = None  # the aligned photo crop, for uploaded photos
    photo: Optional[Image.Image] = None  # the whole uploaded photo: edits are pasted back into it
    face: Optional[object] = None  # its faces.AlignedFace (where the crop was cut)
    generator: Optional[torch.nn.Module] = None  # the PTI-tuned generator of this photo (None: the shared one)
    fidelity: Optional[dict] = None  # the inversion's figures (fidelity.FaceInversion.report())
    pasted: Optional[Image.Image] = None  # the photo with the last edit pasted back, and its file
    pasted_file: Optional[str] = None

    def replace(self, **changes) -> "Session":
        return dataclasses.replace(self, **changes)


@dataclass
class EditOutput:
    """What one edit shows: before/after (display size), a one-paragraph summary, the files to download,
    intermediate frames (optimization) and the new session."""

    before: Image.Image
    after: Image.Image
    info: str
    image_file: Path
    latent_file: Path
    session: Session
    frames: list[Image.Image] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    photo: Optional[Image.Image] = None  # uploaded photos: the whole photo with the edit pasted back
    photo_file: Optional[Path] = None


@dataclass
class SourceOutput:
    image: Image.Image  # display size
    info: str
    session: Session
    aligned: Optional[Image.Image] = None  # display size, uploaded photos only
    photo: Optional[Image.Image] = None  # uploaded photos: the photo (at most PHOTO_SIDE)


MAX_TEXT = MAX_PROMPT_CHARS  # characters of a prompt or neutral text (CLIP reads 77 tokens)


def _text(value, what: str) -> str:
    value = str(value or "")
    if len(value) > MAX_TEXT:  # refused before any work: a 1M-character prompt must not cost server time
        raise InputError(f"the {what} is {len(value)} characters long; at most {MAX_TEXT}")
    text = " ".join(value.split())
    if not text:
        raise InputError(f"the {what} is empty: type what the face should become, e.g. 'a smiling face'")
    return text


def _number(value, name: str, what: str):
    """`value` within the edit plan's bounds of setting `name` (the CLI's), as a number of its type."""
    if value is None or isinstance(value, bool):
        raise InputError(f"{what} must be a number, got {value!r}")
    return check(name, value, label=what)


class StyleClipApp:
    """The models and every action of the web app. `model`: a model-set name ('debug': tiny random nets, no
    download; 'ffhq': real weights) or a generator checkpoint path. `relevance` / `stats`: files for global
    directions (an official fs3.npy works); without them the cache is used, and small generators get
    quick statistics computed at start. Models, directions and mappers are shared by all users."""

    def __init__(self, model: str = "debug", *, device: str = "auto", relevance: str | Path | None = None,
                 stats: str | Path | None = None, mapper_folders: Sequence[str | Path] | None = None,
                 out_dir: str | Path | None = None, detector=None, prepare_global: bool = True):
        self.model = str(model)
        self.record = models.for_source(self.model)  # models.CHECKPOINT for a generator file
        self.checkpoint = None if self.model in models.MODEL_SETS else Path(self.model)
        self.device = factory.resolve_device(device)
        self.generator = factory.load_generator(self.model, device=self.device)
        self.clip = factory.load_clip(factory.clip_for(self.generator, model=self.model), device=self.device)
        self.notices: list[str] = []
        self.identity = self._load_identity(None if self.checkpoint is not None else self.model)
        self.relevance_file, self.stats_file = relevance, stats
        self.mapper_folders = list(mapper_folders) if mapper_folders is not None else None
        self._own_out_dir = out_dir is None
        self.out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="styleclip-app-"))
        if self._own_out_dir:
            atexit.register(self.close)
        self.detector = detector
        self._lock = threading.Lock()
        self._global = None
        self._global_error: Optional[str] = None
        self._mappers: dict[str, object] = {}  # mapper file path -> MapperEditor
        self._mapper_paths: dict[str, Path] = {}
        if prepare_global:
            try:
                self.global_editor()
            except StyleClipError as e:
                self.notices.append(f"global directions unavailable: {e}")

    def close(self) -> None:
        """Remove the result folder when the app made it (also run at interpreter exit)."""
        if self._own_out_dir:
            shutil.rmtree(self.out_dir, ignore_errors=True)

    # ---- models -------------------------------------------------------------------------------------
    def request(self, **settings) -> plan.EditRequest:
        """An edit-plan request on this app's model (nothing written: the app keeps its own result folders)."""
        if self.checkpoint is not None:
            return plan.EditRequest(checkpoint=self.checkpoint, out=None, device=str(self.device), **settings)
        return plan.EditRequest(model=self.model, out=None, device=str(self.device), **settings)

    def optimize_defaults(self):
        """The optimization settings the page starts with: the CLI's for this model set (`edit --engine
        optimize`)."""
        from styleclip.editors.optimization import OptimizationConfig

        options = plan.resolve(self.request(prompt="x", engine="optimize")).options
        return OptimizationConfig(**options)

    def global_defaults(self, keep_identity: bool = False) -> tuple[float, float]:
        """(alpha, beta) the page starts with: the CLI's `edit --engine global` with --fixed-strength, or with
        keep_identity its identity budget's."""
        return self.record.presets.global_.alpha_beta(keep_identity)

    def invert_steps_default(self) -> int:
        """The projector steps of a photo upload: the model set's (the CLI's `--invert-steps` default)."""
        from styleclip.photo.invert import InversionConfig

        return int(self.record.presets.projector.steps or InversionConfig().steps)

    def examples(self, engine: str) -> list[list]:
        """Example rows for the page: global [neutral, target, alpha, beta], optimize [prompt]: the model set's
        own (FFHQ's for a checkpoint), with the model's alpha and beta where a row gives none."""
        rows = self.record.examples.global_ if engine == "global" else self.record.examples.optimize
        if engine != "global":
            return [list(r) for r in rows]
        alpha, beta = self.global_defaults()
        return [list(r) + [alpha, beta][len(r) - 2:] for r in rows]

    @property
    def size(self) -> int:
        return self.generator.config.size

    def describe(self) -> str:
        g = self.generator
        kind = (self.record.app_description or self.record.description) if self.checkpoint is None \
            else f"checkpoint {self.model}"
        text = f"Model **{self.model}**: {kind}. Generator {g.config.size} px, {len(g.layers)} style layers, " \
               f"device {self.device.type}."
        if self.identity is None:
            text += " No identity network (identity loss off)."
        return text

    def _load_identity(self, name):
        loader = getattr(factory, "load_identity", None)
        if loader is None or name is None:
            return None
        try:
            return loader(name, device=self.device)
        except StyleClipError as e:
            self.notices.append(f"identity loss off: {' '.join(str(e).split())}")
            return None

    def global_editor(self, report: Optional[Report] = None):
        """The shared global-directions engine (built once; its direction cache is per (neutral, target, beta))."""
        from styleclip.editors.global_directions import GlobalDirectionsConfig, GlobalDirectionsEditor
        from styleclip.store import stylespace_files as files

        with self._lock:
            if self._global is not None:
                return self._global
            if self._global_error is not None:
                raise StyleClipError(self._global_error)
            g = self.generator
            progress = (lambda d, t: report(d, t, "channel relevance")) if report else None
            try:
                rel_found = self.relevance_file is not None or files.shipped_relevance(g, self.clip) is not None or \
                    any(files.relevance_cache_path(g, self.clip, m).is_file() for m in ("exact", "fast"))
                if rel_found or self.stats_file is not None or g.config.size > SMALL_GENERATOR:
                    # the CLI's lookup: the files given, else the shipped or cached statistics and relevance
                    self._global = factory.create_editor(  # with the model set's refinements
                        "global", g, self.clip, self.identity, relevance=self.relevance_file, stats=self.stats_file,
                        compute_missing=False, progress=progress,
                        **factory.global_direction_options(self.model, self.identity))
                else:  # nothing shipped or cached for this small generator (debug): a quick estimate, said so
                    stats = files.load_or_compute_stats(g, n=SMALL_STATS_SAMPLES)
                    rel = files.load_or_compute_relevance(g, self.clip, stats, n_images=SMALL_RELEVANCE_IMAGES,
                                                          progress=progress)
                    config = GlobalDirectionsConfig(stats=stats, relevance=rel)
                    self._global = GlobalDirectionsEditor(g, self.clip, config=config)
                    self.notices.append(f"global directions use a quick {SMALL_RELEVANCE_IMAGES}-image channel "
                                        "relevance (none is shipped or cached for this generator)")
            except StyleClipError as e:
                self._global_error = " ".join(str(e).split())
                raise
            return self._global

    # ---- sources --------------------------------------------------------------------------------------
    def view(self, img: torch.Tensor | Image.Image) -> Image.Image:
        """An image for display: [3,H,W] or PIL, tiny ones enlarged (nearest neighbour)."""
        pil = to_pil(img) if isinstance(img, torch.Tensor) else img
        return upscale_for_viewing(pil, VIEW_SIZE)

    def _g(self, session: Optional[Session]):
        """The generator a session renders with: its photo's PTI-tuned one, else the shared one."""
        return session.generator if session is not None and session.generator is not None else self.generator

    def _session(self, w_plus: torch.Tensor, label: str, *, generator=None, **photo) -> Session:
        g = generator if generator is not None else self.generator
        with torch.no_grad():
            img = g.synthesis(w_plus.to(self.device))
        return Session(w_plus=w_plus.detach().cpu(), label=label, source=to_pil(img[0]),
                       generator=generator if generator is not self.generator else None, **photo)

    def face_from_seed(self, seed, truncation=0.7) -> SourceOutput:
        from styleclip.sources import latents_from_seeds

        seed = _number(seed, "seed", "the seed")
        truncation = _number(truncation, "truncation", "truncation")
        latent = latents_from_seeds(self.generator, [seed], truncation)
        session = self._session(latent.w_plus, f"seed{seed}")
        return SourceOutput(self.view(session.source), f"Random face: seed {seed}, truncation {truncation:g}.",
                            session)

    def new_face(self, truncation=0.7) -> tuple[int, SourceOutput]:
        seed = secrets.randbelow(2**31)
        return seed, self.face_from_seed(seed, truncation)

    def upload_photo(self, path, *, steps=None, face_index=None, invert: str = "auto", pti_steps=None,
                     report: Optional[Report] = None) -> SourceOutput:
        """A photo -> its largest face FFHQ-aligned at the generator's size -> inverted by `invert` (auto: the
        cheapest of e4e / projector / PTI reaching the fidelity target; results cached on disk). The figures
        of every inverter tried are shown; edits are pasted back into the photo."""
        from styleclip.photo import pti
        from styleclip.photo.faces import load_image
        from styleclip.photo.fidelity import invert_face
        from styleclip.photo.invert import InversionConfig, default_encoder
        from styleclip.pipelines.photo import find_faces

        if not path:
            raise InputError("no photo uploaded: drop a photo with a face into the upload box")
        path = Path(path)
        defaults = self.record.presets.projector.overrides()
        steps = _number(steps if steps is not None else defaults.get("steps", InversionConfig().steps),
                        "invert_steps", "inversion steps")
        if report:
            report(0, 1, "finding the face")
        photo = load_image(path, max_side=PHOTO_SIDE)
        face = find_faces(photo, size=self.size, face=face_index, detector=self.detector, source=path.name)[0]
        encoder = default_encoder(self.generator, device=self.device)

        def progress(done, total):
            if report:
                report(done, total, f"inverting ({invert})")

        tune = self.record.presets.pti.overrides()
        if pti_steps is not None:
            tune["steps"] = _number(pti_steps, "pti_steps", "PTI steps")
        inv = invert_face(face.image, self.generator, method=invert, encoder=encoder, identity=self.identity,
                          projector=InversionConfig(**{**defaults, "steps": steps}), pti=pti.PTIConfig(**tune),
                          progress=progress)
        session = self._session(inv.w_plus, _label(path.stem), generator=inv.generator, aligned=face.image,
                                photo=photo, face=face, fidelity=inv.report())
        figures = "; ".join(("**" + f.line() + "** (used)") if f is inv.fidelity else f.line() for f in inv.tried)
        info = f"Photo **{path.name}**: face aligned and inverted ({figures}). The source face is its " \
               "reconstruction: the edits start from it and are pasted back into the whole photo."
        return SourceOutput(self.view(session.source), info, session, aligned=self.view(face.image),
                            photo=photo)

    @staticmethod
    def photo_view(session: Optional[Session]) -> tuple:
        """(the uploaded photo, that photo with the last edit pasted back, its full-size file): Nones for faces
        from seeds and before the first edit."""
        if session is None or session.photo is None:
            return None, None, None
        return session.photo, session.pasted, session.pasted_file

    @staticmethod
    def preview_photo(path) -> Optional[Image.Image]:
        """The uploaded photo for display (None when there is none or it is not a readable image)."""
        from styleclip.photo.faces import load_image

        if not path:
            return None
        try:
            image = load_image(path, max_side=1024)
        except (StyleClipError, OSError, ValueError):
            return None
        image.thumbnail((512, 512))
        return image

    def _ensure(self, session: Optional[Session]) -> Session:
        return session if session is not None else self.face_from_seed(0).session

    # ---- global directions ------------------------------------------------------------------------------
    def _global_edit(self, neutral, target, alpha, beta) -> GlobalEdit:
        target = _text(target, "target text")
        neutral = " ".join(str(neutral or "").split()) or DEFAULT_NEUTRAL
        return GlobalEdit(neutral, target, float(_number(alpha, "strength", "alpha")),
                          float(_number(beta, "beta", "beta")))

    def _direction(self, edit: GlobalEdit):
        return self.global_editor().direction(Prompt(edit.target, neutral=edit.neutral), edit.beta)

    def _source_styles(self, session: Session) -> tuple[Session, list[torch.Tensor]]:
        if session.styles is None:
            with torch.no_grad():
                styles = self._g(session).styles(session.w_plus.to(self.device))
            session = session.replace(styles=tuple(s.cpu() for s in styles))
        return session, [s.to(self.device) for s in session.styles]

    def _combined(self, edits: Sequence[GlobalEdit]) -> tuple[list[torch.Tensor], list[tuple[GlobalEdit, int]]]:
        total, kept = None, []
        for e in edits:
            ds, n, _ = self._direction(e)
            total = [e.alpha * d for d in ds] if total is None else [t + e.alpha * d for t, d in zip(total, ds)]
            kept.append((e, n))
        return total, kept

    def global_edit(self, session, neutral, target, alpha, beta) -> EditOutput:
        """The stacked edits plus this one, applied in S: one synthesis per call (directions and the source's
        styles are cached)."""
        session = self._ensure(session)
        edit = self._global_edit(neutral, target, alpha, beta)
        session, styles = self._source_styles(session)
        total, kept = self._combined(session.stack + (edit,))
        with torch.no_grad():
            edited = ss.apply_direction(styles, total, 1.0)
            img = self._g(session).synthesis_from_styles(edited)
        session, metrics = self._clip_metrics(session, img, edit.target)
        n_all = self.global_editor().relevance.fs3.shape[0]
        lines = [f"`{e.neutral}` → `{e.target}`: α = {e.alpha:g}, β = {e.beta:g}, **{n} of {n_all} channels**"
                 for e, n in kept]
        info = "**Global direction**" + (f" ({len(kept)} edits combined)" if len(kept) > 1 else "") + ": " + \
               "; ".join(lines) + ". " + _clip_line(metrics)
        metrics.update(channels=[n for _, n in kept])
        return self._output("global", session, img, [s.cpu() for s in edited], info, metrics)

    def stack_edit(self, session, neutral, target, alpha, beta) -> tuple[str, Session]:
        """Keep the current global edit; later edits apply on top of it."""
        session = self._ensure(session)
        edit = self._global_edit(neutral, target, alpha, beta)
        self._direction(edit)  # fails now (e.g. beta too high) rather than on the next edit
        session = session.replace(stack=session.stack + (edit,))
        return self.describe_stack(session), session

    def clear_stack(self, session) -> tuple[str, Session]:
        session = self._ensure(session).replace(stack=())
        return self.describe_stack(session), session

    @staticmethod
    def describe_stack(session: Optional[Session]) -> str:
        if session is None or not session.stack:
            return "No stacked edits: **Stack this edit** keeps the current one and lets you add another on top."
        return "Stacked: " + "; ".join(f"{i + 1}. `{e.target}` (α {e.alpha:g}, β {e.beta:g})"
                                       for i, e in enumerate(session.stack))

    def alpha_sweep(self, session, neutral, target, alpha, beta, *, frames: int = SWEEP_FRAMES) -> Path:
        """A GIF of the current global edit with alpha swept from -|alpha| to +|alpha| and back (stacked
        edits stay applied)."""
        session = self._ensure(session)
        edit = self._global_edit(neutral, target, alpha, beta)
        reach = max(abs(edit.alpha), 1.0)
        session, styles = self._source_styles(session)
        base, _ = self._combined(session.stack) if session.stack else ([torch.zeros_like(s[0]) for s in styles],
                                                                       [])
        ds, _, _ = self._direction(edit)
        images = []
        with torch.no_grad():
            for a in torch.linspace(-reach, reach, frames).tolist():
                step = [b + a * d for b, d in zip(base, ds)]
                img = self._g(session).synthesis_from_styles(ss.apply_direction(styles, step, 1.0))
                images.append(self.view(img[0]))
        folder = self._folder()
        return save_gif(images + images[-2:0:-1], folder / f"{session.label}_{_label(edit.target)}_sweep.gif",
                        duration_ms=90)

    # ---- mapper -----------------------------------------------------------------------------------------
    def mapper_choices(self) -> list[str]:
        """Mappers present: trained ones (./mappers, the cache, or `mapper_folders`) and official files found."""
        from styleclip.store.mappers import OFFICIAL_MAPPERS, find_mapper, trained_mappers

        paths = {f"{name} (trained)": p for name, p in sorted(trained_mappers(self.mapper_folders, self.generator).items())}
        for name in sorted(OFFICIAL_MAPPERS):
            try:
                paths[f"{name} (official)"] = find_mapper(name, folders=[])  # no trained ones: the official file
            except StyleClipError:
                pass
        self._mapper_paths = paths
        return list(paths)

    def _mapper(self, choice):
        if not choice:
            raise InputError("no mapper chosen: train one with `styleclip train-mapper` or put an official "
                             "mapper file into the weights folder, then press Refresh")
        if choice not in self._mapper_paths:
            self.mapper_choices()
        if choice in self._mapper_paths:
            path = self._mapper_paths[choice]
        else:  # a name typed or sent through the API ('mohawk'): the CLI's lookup for this generator
            from styleclip.store.mappers import find_mapper

            try:
                path = find_mapper(choice, self.mapper_folders, self.generator)
            except StyleClipError as e:
                raise InputError(f"unknown mapper {choice!r}: {' '.join(str(e).split())}; choose one of: "
                                 f"{', '.join(self._mapper_paths) or 'none'}") from None
        key = str(path)
        with self._lock:
            if key not in self._mappers:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._mappers[key] = factory.create_editor("mapper", self.generator, self.clip, self.identity,
                                                                mapper=path)
            return self._mappers[key]

    def mapper_edit(self, session, choice, strength=1.0) -> EditOutput:
        from styleclip.photo.pti import with_generator

        session = self._ensure(session)
        editor = with_generator(self._mapper(choice), self._g(session))
        strength = float(_number(strength, "strength", "strength"))
        prompt = editor.prompt or choice.split(" (")[0].replace("_", " ")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = editor.edit(Latent(session.w_plus.to(self.device)), Prompt(prompt, strength=strength))
        metrics = _first(result.metrics)
        if "identity_similarity" in metrics:
            metrics["identity"] = metrics.pop("identity_similarity")
        info = f"**Mapper** `{choice}` (trained for “{prompt}”), strength {strength:g}. " + _clip_line(metrics)
        return self._output("mapper", session, result.image, result.latent.cpu(), info, metrics)

    # ---- optimization -------------------------------------------------------------------------------------
    def optimize(self, session, prompt, steps=None, lr=None, l2_lambda=None, id_lambda=None, *,
                 report: Optional[Report] = None) -> EditOutput:
        """CLIP-guided latent optimization from the source (a fresh engine per call: no shared state), with
        the edit plan's settings and bounds (those of `styleclip edit --engine optimize`)."""
        session = self._ensure(session)
        target = _text(prompt, "prompt")
        d = self.optimize_defaults()
        steps = _number(d.steps if steps is None else steps, "steps", "steps")
        lr = float(_number(d.lr if lr is None else lr, "lr", "learning rate"))
        l2_lambda = float(_number(d.l2_lambda if l2_lambda is None else l2_lambda, "l2_lambda", "the L2 lambda"))
        id_lambda = float(_number(d.id_lambda if id_lambda is None else id_lambda, "id_lambda", "the identity lambda"))
        settings = plan.resolve(self.request(prompt=target, engine="optimize", steps=steps, lr=lr,
                                             l2_lambda=l2_lambda, id_lambda=id_lambda))
        editor = plan.build_editor(settings, self._g(session), self.clip, self.identity,
                                   frame_every=max(1, steps // 8))

        def progress(done, total):
            if report:
                losses = ", ".join(f"{k} {v:.3f}" for k, v in editor.last_losses.items())
                report(done, total, f"optimizing ({losses})" if losses else "optimizing")

        result = editor.edit(Latent(session.w_plus.to(self.device)), Prompt(target, strength=settings.strength),
                             progress=progress)
        metrics = _first(result.metrics)
        if "identity_similarity" in metrics:
            metrics["identity"] = metrics.pop("identity_similarity")
        info = f"**Optimization** toward “{target}”: {steps} steps, lr {lr:g}, λ_L2 {l2_lambda:g}, " \
               f"λ_ID {id_lambda:g}{'' if self.identity is not None else ' (no identity net)'}. " + \
               _clip_line(metrics)
        frames = [self.view(f[0]) for f in result.frames]
        return self._output("optimize", session, result.image, result.latent.cpu(), info, metrics, frames)

    # ---- any prompt / reference image ----------------------------------------------------------------------
    ANY_PROMPT_ENGINES = ("universal mapper", "global", "optimize")

    STRENGTH_MODES = ("fixed", "auto (CLIP gain)", "keep identity")

    def any_prompt_edit(self, session, prompt, image_path=None, engine="universal mapper", strength=1.0,
                        auto=False, *, report: Optional[Report] = None) -> EditOutput:
        """An edit toward a text and/or a reference image (its CLIP embedding is the target) with the
        universal mapper, global directions or optimization. `auto` (one of STRENGTH_MODES, or a bool: True is
        'auto (CLIP gain)') picks the strength per face: the smallest reaching the CLIP gain, or the strongest
        up to the slider's that keeps the person."""
        from styleclip.util.imaging import load_reference_image

        session = self._ensure(session)
        if engine not in self.ANY_PROMPT_ENGINES:
            raise InputError(f"engine must be one of {', '.join(self.ANY_PROMPT_ENGINES)}, got {engine!r}")
        mode = {True: "auto (CLIP gain)", False: "fixed", None: "fixed"}.get(auto, auto)
        if mode not in self.STRENGTH_MODES:
            raise InputError(f"strength per face must be one of {', '.join(self.STRENGTH_MODES)}, got {auto!r}")
        text = " ".join(str(prompt or "").split())
        ref = load_reference_image(image_path, self.size) if image_path else None
        if not text and ref is None:
            raise InputError("say what to edit toward: type a prompt or upload a reference image")
        strength = float(_number(strength, "strength", "strength"))
        budget = mode == "keep identity" and engine != "optimize"
        kind = {"universal mapper": "universal", "global": "global", "optimize": "optimize"}[engine]
        if kind == "global":
            strength *= self.global_defaults(keep_identity=budget)[0]  # the slider is a multiple of the model's alpha
        if self.identity is None and budget:
            raise InputError("'keep identity' needs an identity net, and this model set has none")
        per_face = {} if kind == "optimize" else dict(auto_strength=mode == "auto (CLIP gain)", keep_identity=budget)
        settings = plan.resolve(self.request(prompt=text, engine=kind, strength=strength, **per_face))
        target = Prompt(text, strength=settings.strength, image=ref)
        shared = {}
        if kind == "global":  # the shared statistics and relevance (computed or read once)
            g = self.global_editor()
            shared = dict(stats=g.stats, relevance=g.relevance, identity_cost=g.identity_cost)
        editor = plan.build_editor(settings, self.generator, self.clip, self.identity, **shared)
        progress = (lambda d, t: report(d, t, engine)) if report else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = editor.edit(Latent(session.w_plus.to(self.device)), target, progress=progress)
        metrics = _first(result.metrics)
        if "identity_similarity" in metrics:
            metrics["identity"] = metrics.pop("identity_similarity")
        chosen = metrics.get("alpha", metrics.get("strength", strength))
        info = f"**{engine.capitalize()}** toward {'the reference image' if ref is not None else ''}" \
               f"{' and ' if ref is not None and text else ''}{f'“{text}”' if text else ''}, strength {chosen:g}" \
               + (" (auto: CLIP gain " + ("reached" if metrics.get("gain_reached") else "not reached") + ")"
                  if "gain_reached" in metrics else "") \
            + (" (keep identity: the strongest up to the slider's that keeps the person)" if budget else "") \
            + ". " + _clip_line(metrics)
        latent = result.latent.cpu() if isinstance(result.latent, torch.Tensor) else [s.cpu() for s in result.latent]
        return self._output(engine.split()[0], session, result.image, latent, info, metrics)

    # ---- shared output -------------------------------------------------------------------------------------
    def _clip_metrics(self, session: Session, img: torch.Tensor, target: str) -> tuple[Session, dict]:
        with torch.no_grad():
            text = self.clip.encode_text([target])
            if session.source_clip is None:
                src = from_pil(session.source).to(self.device)
                session = session.replace(source_clip=self.clip.encode_image(src).cpu())
            after = float(self.clip.encode_image(img)[0] @ text[0])
            before = float(session.source_clip[0].to(text) @ text[0])
        return session, {"clip_before": before, "clip_after": after}

    def _folder(self) -> Path:
        """A new folder for one result's files; the oldest go once there are more than KEEP_RESULTS."""
        folders = sorted((p for p in self.out_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime) \
            if self.out_dir.is_dir() else []
        for old in folders[:max(0, len(folders) - KEEP_RESULTS + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        folder = self.out_dir / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _output(self, engine, session, img, latent, info, metrics, frames=()) -> EditOutput:
        folder = self._folder()
        image_file = folder / f"{session.label}_{engine}.png"
        to_pil(img[0]).save(image_file)
        latent_file = folder / f"{session.label}_{engine}_latent.pt"
        save_latent(latent, latent_file)  # W+ [1,num_ws,D], or for global edits S space (as the CLI writes)
        photo = photo_file = None
        if session.photo is not None:  # the whole photo with the edit pasted back
            from styleclip.photo.paste import paste_back

            photo = paste_back(session.photo, img[0], session.face)
            photo_file = folder / f"{session.label}_{engine}_photo.png"
            photo.save(photo_file)
            session = session.replace(pasted=photo, pasted_file=str(photo_file))
        return EditOutput(self.view(session.source), self.view(img[0]), info, image_file, latent_file, session,
                          list(frames), metrics, photo, photo_file)


def _label(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40] or "face"


def _first(metrics: dict) -> dict:
    """Per-sample metric lists -> the first sample's value (the app edits one face)."""
    return {k: (v[0] if isinstance(v, (list, tuple)) and v and isinstance(v[0], (int, float)) else v)
            for k, v in metrics.items()}


def _clip_line(metrics: dict) -> str:
    text = ""
    if "clip_before" in metrics and "clip_after" in metrics:
        text = f"CLIP similarity to the text {metrics['clip_before']:.3f} → {metrics['clip_after']:.3f}"
    if "identity" in metrics:
        text += f", identity similarity {metrics['identity']:.3f}"
    return text + ("." if text else "")
