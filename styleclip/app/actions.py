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

from styleclip import factory
from styleclip import stylespace as ss
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


# Example prompts the page offers, per model set: each world can only show what it has (toy faces have no
# grey hair or anger). Global examples take the model's alpha and beta unless they give their own.
EXAMPLES = {
    "toy-faces": {
        "global": [["a face", t] for t in ("a face with blond hair", "a face with a beard", "a face with purple hair",
                                           "a face with long hair", "a surprised face")],
        "optimize": [["a face wearing glasses"], ["a face with purple hair"], ["a face with a mohawk"],
                     ["a surprised face"]],
    },
    "ffhq": {  # the StyleCLIP notebooks' settings
        "global": [["a face", "a smiling face", 4.1, 0.15], ["a face", "a face with glasses", 4.1, 0.13],
                   ["a face", "a face with grey hair", 5.0, 0.15], ["a face with hair", "a face with curly hair", 4.0, 0.12],
                   ["a face", "an angry face", 4.0, 0.15]],
        "optimize": [["a person with purple hair"], ["a face with a mohawk hairstyle"], ["an old person with grey hair"],
                     ["a surprised face"]],
    },
}


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


def _number(value, what: str, lo: float, hi: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None
    if not lo <= x <= hi:  # also refuses NaN
        raise InputError(f"{what} must be between {lo:g} and {hi:g}, got {value!r}")
    return x


class StyleClipApp:
    """The models and every action of the web app. `model`: a model-set name ('debug': tiny random nets, no
    download; 'ffhq': real weights) or a generator checkpoint path. `relevance` / `stats`: files for global
    directions (an official fs3.npy works); without them the cache is used, and small generators get
    quick statistics computed at start. Models, directions and mappers are shared by all users."""

    def __init__(self, model: str = "debug", *, device: str = "auto", relevance: str | Path | None = None,
                 stats: str | Path | None = None, mapper_folders: Sequence[str | Path] | None = None,
                 out_dir: str | Path | None = None, detector=None, prepare_global: bool = True):
        self.model = str(model)
        self.device = factory.resolve_device(device)
        self.generator = factory.load_generator(self.model, device=self.device)
        clip_name = self.model if self.model in _model_sets() else None  # a checkpoint path: the default CLIP
        self.clip = factory.load_clip(clip_name, device=self.device)
        self.notices: list[str] = []
        self.identity = self._load_identity(clip_name)
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
    def optimize_defaults(self):
        """The optimization settings the page starts with: the model set's tuned ones over the paper's."""
        from styleclip.editors.optimization import OptimizationConfig

        return OptimizationConfig(**factory.edit_defaults(self.model, "optimize"))

    def global_defaults(self, keep_identity: bool = False) -> tuple[float, float]:
        """(alpha, beta) the page starts with (keep_identity: the model set's own for an identity budget)."""
        tuned = factory.edit_defaults(self.model, "global", keep_identity=keep_identity)
        return float(tuned.get("strength", 4.1)), float(tuned.get("beta", 0.15))

    def examples(self, engine: str) -> list[list]:
        """Example rows for the page: global [neutral, target, alpha, beta], optimize [prompt]; the toy world's
        prompts on toy-faces, FFHQ's otherwise, with the model's alpha and beta where a row gives none."""
        rows = EXAMPLES.get(self.model, EXAMPLES["ffhq"])[engine]
        if engine != "global":
            return [list(r) for r in rows]
        alpha, beta = self.global_defaults()
        return [list(r) + [alpha, beta][len(r) - 2:] for r in rows]

    @property
    def size(self) -> int:
        return self.generator.config.size

    def describe(self) -> str:
        g = self.generator
        sets = _model_sets()
        kind = sets[self.model].description if self.model in sets else f"checkpoint {self.model}"
        if self.model == "debug":
            kind = "tiny random networks, no download (the faces are noise-like: for trying the app)"
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

        seed = int(_number(seed, "the seed", 0, 2**32 - 1))
        truncation = _number(truncation, "truncation", 0.0, 1.0)
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
        defaults = {**factory.edit_defaults(self.model, "projector")}
        steps = int(_number(steps if steps is not None else defaults.get("steps", InversionConfig().steps),
                            "inversion steps", 1, 5000))
        if report:
            report(0, 1, "finding the face")
        photo = load_image(path, max_side=PHOTO_SIDE)
        face = find_faces(photo, size=self.size, face=face_index, detector=self.detector, source=path.name)[0]
        encoder = default_encoder(self.generator, device=self.device)

        def progress(done, total):
            if report:
                report(done, total, f"inverting ({invert})")

        tune = factory.edit_defaults(self.model, "pti")
        if pti_steps is not None:
            tune["steps"] = int(_number(pti_steps, "PTI steps", 1, 5000))
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
        return GlobalEdit(neutral, target, _number(alpha, "alpha", -100, 100), _number(beta, "beta", 0, 1))

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
        strength = _number(strength, "strength", -10, 10)
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
        """CLIP-guided latent optimization from the source (a fresh engine per call: no shared state)."""
        session = self._ensure(session)
        target = _text(prompt, "prompt")
        d = self.optimize_defaults()
        steps = int(_number(d.steps if steps is None else steps, "steps", 1, 5000))
        lr = _number(d.lr if lr is None else lr, "learning rate", 1e-5, 10)
        l2_lambda = _number(d.l2_lambda if l2_lambda is None else l2_lambda, "the L2 lambda", 0, 100)
        id_lambda = _number(d.id_lambda if id_lambda is None else id_lambda, "the identity lambda", 0, 100)
        config = dataclasses.replace(d, steps=steps, lr=lr, l2_lambda=l2_lambda, id_lambda=id_lambda,
                                     frame_every=max(1, steps // 8))
        editor = factory.create_editor("optimize", self._g(session), self.clip, self.identity, config=config)

        def progress(done, total):
            if report:
                losses = ", ".join(f"{k} {v:.3f}" for k, v in editor.last_losses.items())
                report(done, total, f"optimizing ({losses})" if losses else "optimizing")

        result = editor.edit(Latent(session.w_plus.to(self.device)), Prompt(target), progress=progress)
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
        from styleclip.encoders.targets import load_reference_image

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
        strength = _number(strength, "strength", 0, 20)
        budget = mode == "keep identity" and engine != "optimize"
        alpha, beta = self.global_defaults(keep_identity=budget)
        if engine == "global":
            strength *= alpha  # the slider is a multiple of the model's alpha
        target = Prompt(text, strength=strength, image=ref)
        options: dict = {}
        if mode != "fixed" and engine != "optimize":
            if self.identity is None and budget:
                raise InputError("'keep identity' needs an identity net, and this model set has none")
            options = dict(auto=True, auto_strength=factory.auto_strength_config(
                self.model, self.identity, target="identity" if budget else "gain"))
        if engine == "universal mapper":
            tuned = factory.edit_defaults(self.model, "universal")
            editor = factory.create_editor("mapper", self.generator, self.clip, self.identity, mapper="universal",
                                           beta=tuned.get("beta"), min_change=tuned.get("min_change", 0.0),
                                           **options)  # the CLI's defaults
        elif engine == "global":
            g = self.global_editor()
            editor = factory.create_editor("global", self.generator, self.clip, self.identity, beta=beta,
                                           stats=g.stats, relevance=g.relevance, identity_cost=g.identity_cost,
                                           ridge=g.config.ridge, identity_damping=g.config.identity_damping,
                                           **options)
        else:
            editor = factory.create_editor("optimize", self.generator, self.clip, self.identity,
                                           **dataclasses.asdict(self.optimize_defaults()))
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


def _model_sets() -> dict:
    from styleclip.store import registry as pretrained

    return pretrained.MODEL_SETS


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
