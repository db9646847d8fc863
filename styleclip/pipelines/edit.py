"""The edit plan every front end uses (`styleclip edit`, the web app, Python):

    EditRequest (model set or checkpoint, engine, target, source, overrides)
      -> resolve()     -> EditSettings (frozen; every value with where it came from: default, model set, option)
      -> build()       -> BuiltEdit (generator, CLIP, identity net, engine)
      -> run()         -> EditRun (per-source results; files written into the run's own folder)

`edit(request)` does all three. `resolve` loads no model: it checks bounds, option/engine combinations and
the output folder, so a mistake is one error before anything loads (`styleclip edit --dry-run` prints it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from styleclip import models
from styleclip.errors import InputError
from styleclip.pipelines.bounds import check, flag

ENGINE_NAMES = ("optimize", "global", "mapper", "universal")

# Settings only one engine uses: refused with another engine rather than ignored ('universal' is the mapper
# engine with the universal mapper). Field names of EditRequest.
ENGINE_FIELDS: dict[str, tuple[str, ...]] = {
    "optimize": ("steps", "lr", "l2_lambda", "id_lambda", "mode", "space", "bf16", "checkpoint_min_res", "gif",
                 "clip_views", "init", "compile"),
    "global": ("neutral", "beta", "relevance"),
    "mapper": ("mapper",),
    "universal": ("beta",),  # the universal mapper's disentanglement threshold
}
DEFAULT_NEUTRAL = "a face"
STRENGTH_MODES = ("fixed", "auto", "keep-identity")

Notice = Callable[[str], None]


@dataclass(frozen=True)
class EditRequest:
    """What a caller asks for; None means "not given" (the model set's or the engine's default applies).

    Target: `prompt` and/or `target_image`. Source: one of seed, seeds ('0-7'), latent (file), latents
    (folder), image (a photo: aligned, inverted, edited, pasted back). `out`: the folder under which the
    run's own folder is made (None: write nothing, e.g. the app)."""

    prompt: Optional[str] = None
    target_image: Optional[Path] = None
    engine: Optional[str] = None
    model: Optional[str] = None
    checkpoint: Optional[Path] = None
    seed: Optional[int] = None
    seeds: Optional[str] = None
    latent: Optional[Path] = None
    latents: Optional[Path] = None
    image: Optional[Path] = None
    face: Optional[str] = None
    invert: str = "auto"
    invert_steps: Optional[int] = None
    pti_steps: Optional[int] = None
    target_psnr: float = 27.0
    target_identity: float = 0.9
    crop_only: bool = False
    truncation: float = 0.7
    steps: Optional[int] = None
    lr: Optional[float] = None
    l2_lambda: Optional[float] = None
    id_lambda: Optional[float] = None
    mode: Optional[str] = None
    space: Optional[str] = None
    bf16: bool = False
    compile: bool = False
    checkpoint_min_res: Optional[int] = None
    clip_views: Optional[int] = None
    init: Optional[str] = None
    strength: Optional[float] = None
    neutral: Optional[str] = None
    beta: Optional[float] = None
    relevance: Optional[Path] = None
    mapper: Optional[str] = None
    auto_strength: bool = False
    keep_identity: Optional[bool] = None
    direction: Optional[str] = None
    batch_size: int = 4
    out: Optional[Path] = Path("outputs")
    overwrite: bool = False
    gif: bool = False
    device: str = "auto"

    def given(self, name: str) -> bool:
        """Whether the caller set `name` (a flag counts when it is on)."""
        value = getattr(self, name)
        return bool(value) if isinstance(value, bool) else value is not None


@dataclass(frozen=True)
class EditSettings:
    """A request resolved: the model set's record, the engine and every value the edit uses, each with its
    origin ('default', 'model set <name>', 'option'). `editor_options`: the engine's Config keyword
    arguments (identity-dependent parts are added by `build_editor`)."""

    request: EditRequest
    model: models.ModelSet  # the record whose settings apply (models.CHECKPOINT for a generator file)
    model_name: Optional[str]  # --model as resolved (None with only --checkpoint)
    engine: str  # optimize | global | mapper | universal
    prompt: str
    neutral: str
    strength: float
    direction: str
    strength_mode: str  # fixed | auto | keep-identity
    editor_options: tuple[tuple[str, object], ...]
    wants_identity: bool
    folder: Optional[Path]  # the run's own folder (None: nothing is written)
    shown: tuple[tuple[str, object, str], ...]  # (name, value, origin) for printing

    @property
    def options(self) -> dict:
        return dict(self.editor_options)

    def as_dict(self) -> dict:
        """name -> value of every resolved setting, in print order."""
        return {name: value for name, value, _ in self.shown}

    def origins(self) -> dict:
        return {name: origin for name, _, origin in self.shown}

    def lines(self) -> list[str]:
        """One line per setting: 'name: value  (origin)'."""
        width = max(len(n) for n, _, _ in self.shown)
        return [f"{name.ljust(width)}  {_show(value)}  ({origin})" for name, value, origin in self.shown]


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


class _Origins:
    """Collects (name, value, origin) in order while resolving."""

    def __init__(self, record: models.ModelSet):
        self.items: list[tuple[str, object, str]] = []
        self.set_name = f"model set {record.name}"

    def pick(self, name: str, given, preset, paper, *, show: bool = True):
        """The given value, else the preset's (origin 'model set' where it differs from the paper's)."""
        if given is not None:
            value, origin = given, "option"
        else:
            value, origin = preset, (self.set_name if preset != paper else "default")
        if show:
            self.items.append((name, value, origin))
        return value

    def add(self, name: str, value, origin: str):
        self.items.append((name, value, origin))


def resolve(request: EditRequest, *, notice: Optional[Notice] = None, download: bool = True) -> EditSettings:
    """Check a request and decide every setting, loading no model. `download`: whether choosing the default
    model set may download FFHQ (a dry run only looks). Bad input: one-line InputError / ValueError."""
    r = request
    if r.model is not None and r.checkpoint is None and r.model not in models.MODEL_SETS:
        if not Path(r.model).exists() and Path(r.model).suffix == "":
            models.get(r.model)  # an unknown name: the error with the known ones
        r = dataclasses.replace(r, model=None, checkpoint=Path(r.model))  # a generator file given as the model
    if r.prompt is None and r.target_image is None:
        raise InputError("say what to edit toward: --prompt 'mohawk' or --target-image face.png")
    for name in ("seed", "invert_steps", "pti_steps", "truncation", "steps", "lr", "clip_views", "l2_lambda",
                 "id_lambda", "checkpoint_min_res", "strength", "beta", "batch_size", "target_psnr",
                 "target_identity"):
        if getattr(r, name) is not None:
            check(name, getattr(r, name))
    _check_text(prompt=r.prompt, neutral=r.neutral)
    from styleclip.factory import resolve_device

    resolve_device(r.device)
    if r.seeds is not None:
        from styleclip.sources import parse_seeds

        parse_seeds(r.seeds)  # a bad --seeds fails before anything loads
    _check_sources(r)
    if r.out is not None:
        from styleclip.util import outputs

        outputs.check_dir(r.out, "--out")

    model_origin = "option"
    model_name = r.model
    if r.model is None and r.checkpoint is None:
        model_name, model_origin = models.default_model_name(notice, download=download), "default"
    record = models.for_source(model_name, r.checkpoint)
    presets = record.presets
    o = _Origins(record)
    o.add("model", model_name if r.checkpoint is None else f"checkpoint {r.checkpoint}",
          model_origin if r.checkpoint is None else "option")

    engine, mapper = _engine(r, record, o)
    universal = engine == "universal"
    own = ENGINE_FIELDS.get(engine, ())
    for other, names in ENGINE_FIELDS.items():
        stray = [flag(n) for n in names if r.given(n) and n not in own
                 and not (n == "mapper" and universal)]
        if other != engine and stray:
            one = len(stray) == 1
            raise InputError(f"{', '.join(stray)} {'is an option' if one else 'are options'} of --engine {other}; "
                             f"--engine {engine} does not use {'it' if one else 'them'}")
    if r.auto_strength and r.keep_identity:
        raise InputError("--auto-strength (reach the CLIP gain) and --keep-identity (the strongest edit that keeps "
                         "the person) pick the strength in two ways: choose one")
    if engine == "optimize" and (r.auto_strength or r.keep_identity):
        which = "--auto-strength" if r.auto_strength else "--keep-identity"
        raise InputError(f"{which} is for --engine global or mapper (optimize has --id-lambda)")
    if engine == "mapper" and r.target_image is not None:
        raise InputError("a per-prompt mapper edits toward the text it was trained for; use --mapper "
                         "universal for a --target-image")

    o.add("prompt", r.prompt, "option")
    if r.target_image is not None:
        o.add("target_image", r.target_image, "option")
    keep_identity = r.keep_identity
    if keep_identity is None:  # the model set's choice (toy-faces global: an identity budget), unless --auto-strength
        keep_identity = not r.auto_strength and engine == "global" and presets.global_.keep_identity
        keep_origin = o.set_name if keep_identity else "default"
    else:
        keep_origin = "option"
    mode = "auto" if r.auto_strength else "keep-identity" if keep_identity else "fixed"

    direction = r.direction or "text"
    if direction not in ("text", "image"):
        raise InputError(f"--direction must be 'text' or 'image', got {direction!r}")
    neutral = r.neutral or DEFAULT_NEUTRAL
    options: dict = {}
    wants_identity = mode != "fixed" or universal or (r.checkpoint is None and record.identity_figure)
    if engine == "optimize":
        p, paper = presets.optimize, models.PAPER.optimize
        strength = o.pick("strength", r.strength, p.strength, paper.strength)
        steps = o.pick("steps", r.steps, p.steps, paper.steps)
        lr = o.pick("lr", r.lr, p.lr, paper.lr)
        l2 = o.pick("l2_lambda", r.l2_lambda, p.l2_lambda, paper.l2_lambda)
        id_lambda = o.pick("id_lambda", r.id_lambda, p.id_lambda, paper.id_lambda)
        views = o.pick("clip_views", r.clip_views, p.clip_views, paper.clip_views)
        init = o.pick("init", r.init, p.init, paper.init)
        min_change = o.pick("init_min_change", None, p.init_min_change, paper.init_min_change, show=init != "source")
        o.add("direction", direction, "option" if r.direction else "default")
        o.add("mode", r.mode or "edit", "option" if r.mode else "default")
        o.add("space", r.space or "wplus", "option" if r.space else "default")
        options = dict(steps=steps, lr=lr, l2_lambda=l2, id_lambda=id_lambda, mode=r.mode or "edit",
                       space=r.space or "wplus", bf16=r.bf16, compile=r.compile,
                       frame_every=max(1, steps // 40) if r.gif else 0, checkpoint_min_res=r.checkpoint_min_res,
                       direction=direction, clip_views=views, init=init, init_min_change=min_change)
        wants_identity = wants_identity or id_lambda > 0
    elif engine == "global":
        p, paper = presets.global_, models.PAPER.global_
        alpha, beta = p.alpha_beta(keep_identity)
        strength = o.pick("strength", r.strength, alpha, paper.strength)
        beta = o.pick("beta", r.beta, beta, paper.beta)
        o.add("neutral", neutral, "option" if r.neutral else "default")
        o.add("direction", direction, "option" if r.direction else "default")
        o.add("strength_mode", mode, keep_origin if mode != "auto" else "option")
        refine = {k: getattr(p, k) for k in ("ridge", "identity_damping") if getattr(p, k) is not None}
        for k, v in refine.items():
            o.add(k, v, o.set_name)
        if r.relevance is not None:
            o.add("relevance", r.relevance, "option")
        options = dict(beta=beta or None, relevance=r.relevance, direction=direction, **refine)
    elif universal:
        p, paper = presets.universal, models.PAPER.universal
        strength = o.pick("strength", r.strength, p.strength, paper.strength)
        beta = o.pick("beta", r.beta, p.beta, paper.beta)  # 0 / None: the mapper's whole W+ edit
        min_change = o.pick("min_change", None, p.min_change, paper.min_change)
        o.add("strength_mode", mode, "option" if mode != "fixed" else "default")
        o.add("mapper", mapper, "option" if r.mapper else "default")
        options = dict(mapper=mapper, beta=beta or None, min_change=min_change)
    else:
        p, paper = presets.mapper, models.PAPER.mapper
        strength = o.pick("strength", r.strength, p.strength, paper.strength)
        o.add("strength_mode", mode, "option" if mode != "fixed" else "default")
        mapper = mapper or r.prompt
        o.add("mapper", mapper, "option" if r.mapper else "the mapper trained for --prompt")
        options = dict(mapper=mapper)
    if r.image is not None:
        _photo_settings(r, record, o)
    o.add("source", _source_text(r), "option" if _source_given(r) else "default")
    if r.seed is None and r.seeds is None and r.image is None:
        o.add("truncation", r.truncation, "option" if r.truncation != 0.7 else "default")
    o.add("clip", record.clip if r.checkpoint is None else "recorded by `styleclip prepare`, else " + record.clip,
          o.set_name if r.checkpoint is None else "default")
    o.add("identity", (r.model or record.identity) if wants_identity or r.image is not None else "off",
          o.set_name if r.checkpoint is None else "default")
    if record.judge_unrelated and r.checkpoint is None:
        o.add("unrelated_attributes", "judged by the evaluation classifier", o.set_name)
    o.add("batch_size", r.batch_size, "option" if r.batch_size != 4 else "default")
    o.add("device", r.device, "option" if r.device != "auto" else "default")
    folder = None
    if r.out is not None:
        from styleclip.util import outputs

        folder = outputs.run_folder(r.out, run_name(r.prompt, r.target_image, engine), overwrite=r.overwrite)
        o.add("out", f"{folder}/", "--overwrite: reused" if r.overwrite else "a new folder per run")
    return EditSettings(request=r, model=record, model_name=model_name, engine=engine, prompt=r.prompt or "",
                        neutral=neutral, strength=float(strength), direction=direction, strength_mode=mode,
                        editor_options=tuple(options.items()), wants_identity=wants_identity, folder=folder,
                        shown=tuple(o.items))


def run_name(prompt: Optional[str], target_image, engine: str) -> str:
    """The run folder's name: '<prompt slug>-<engine>' ('image-<file stem>' for a target image alone)."""
    from styleclip.util.outputs import slug

    if prompt and prompt.strip():
        head = slug(prompt)
    else:
        head = "image-" + slug(Path(target_image).stem, 40) if target_image is not None else "edit"
    return f"{head}-{engine}"


def _engine(r: EditRequest, record: models.ModelSet, o: _Origins) -> tuple[str, Optional[str]]:
    """(engine, mapper): 'universal' for the universal mapper (named, a universal file, or an image target)."""
    engine, origin = r.engine, "option"
    if engine is None:  # the model set's default engine; optimize (the usual default) when its options are given
        if any(r.given(n) for n in ENGINE_FIELDS["optimize"]):
            engine, origin = "optimize", "default (optimize options given)"
        else:
            engine = record.default_engine
            origin = o.set_name if engine != models.PAPER_ENGINE else "default"
    if engine not in ENGINE_NAMES:
        import difflib

        close = difflib.get_close_matches(str(engine), ENGINE_NAMES, n=1)
        raise InputError(f"unknown engine {engine!r}; choose one of: {', '.join(sorted(ENGINE_NAMES))}"
                         + (f" (did you mean {close[0]}?)" if close else ""))
    mapper = r.mapper
    if engine == "universal":
        engine, mapper = "mapper", mapper or "universal"
    if engine == "mapper" and mapper is None and r.target_image is not None:
        mapper = "universal"  # a per-prompt mapper knows one text; an image target needs the universal one
    if engine == "mapper" and mapper is not None:
        from styleclip.factory import is_universal_mapper

        if is_universal_mapper(mapper):
            engine = "universal"
    o.add("engine", engine, origin)
    return engine, mapper


def _check_text(**texts) -> None:
    from styleclip.types import MAX_PROMPT_CHARS

    for name, text in texts.items():
        if text is not None and len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"--{name} is {len(text)} characters long; at most {MAX_PROMPT_CHARS}")


def _check_sources(r: EditRequest) -> None:
    given = [flag(n) for n in ("seed", "seeds", "latent", "latents", "image") if getattr(r, n) is not None]
    if len(given) > 1:
        raise InputError(f"give only one source, not {' and '.join(given)}: --seed, --seeds, --latent, --latents "
                         "or --image")
    if r.image is None and (r.face is not None or r.invert_steps is not None):
        raise InputError("--face-index and --invert-steps are options of an --image source")


def _source_given(r: EditRequest) -> bool:
    return any(getattr(r, n) is not None for n in ("seed", "seeds", "latent", "latents", "image"))


def _source_text(r: EditRequest) -> str:
    for name in ("seeds", "latent", "latents", "image"):
        if getattr(r, name) is not None:
            return f"{name} {getattr(r, name)}"
    return f"seed {r.seed or 0}"


def _photo_settings(r: EditRequest, record: models.ModelSet, o: _Origins) -> None:
    proj, tune = record.presets.projector.overrides(), record.presets.pti.overrides()
    o.add("invert", r.invert, "option" if r.invert != "auto" else "default")
    o.add("invert_steps", r.invert_steps if r.invert_steps is not None else proj.get("steps", "the projector's"),
          "option" if r.invert_steps is not None else o.set_name if "steps" in proj else "default")
    o.add("pti_steps", r.pti_steps if r.pti_steps is not None else tune.get("steps", "PTI's"),
          "option" if r.pti_steps is not None else o.set_name if "steps" in tune else "default")
    o.add("target_psnr", r.target_psnr, "option" if r.target_psnr != 27.0 else "default")
    o.add("target_identity", r.target_identity, "option" if r.target_identity != 0.9 else "default")


# ---- build -----------------------------------------------------------------------------------------------
@dataclass
class BuiltEdit:
    """The loaded models and the engine of one EditSettings; `prompt` is the Prompt with its image target."""

    settings: EditSettings
    generator: object
    clip: object
    identity: object
    editor: object
    prompt: object
    judge: Optional[Callable] = None
    notices: list = field(default_factory=list)


def build_editor(settings: EditSettings, generator, clip, identity=None, **overrides):
    """The engine of `settings` on these models (the identity net where the edit uses it); `overrides`
    replace Config fields (the app: its shared global statistics, optimization frames)."""
    from styleclip import factory

    options = settings.options
    if settings.engine == "global" and identity is None:
        options.pop("identity_damping", None)  # identity damping needs the identity net
    if settings.strength_mode != "fixed":
        if settings.strength_mode == "keep-identity" and identity is None:
            raise InputError("--keep-identity needs an identity net, and this model set has none")
        options.update(auto=True, auto_strength=factory.auto_strength_config(
            settings.model_name if settings.request.checkpoint is None else None, identity,
            target="identity" if settings.strength_mode == "keep-identity" else "gain"))
    options.update(overrides)
    kind = "mapper" if settings.engine == "universal" else settings.engine
    return factory.create_editor(kind, generator, clip, identity if settings.wants_identity else None, **options)


def load_identity(settings: EditSettings, device, notice: Optional[Notice] = None):
    """The identity net of the model set, or None (with a notice) when it cannot be had."""
    from styleclip import factory
    from styleclip.errors import WeightsMissingError

    try:
        return factory.load_identity(settings.model_name, device=device)
    except WeightsMissingError as e:
        if notice is not None:
            notice(f"notice: identity loss off ({e})")
        return None


def build(settings: EditSettings, *, notice: Optional[Notice] = None, generator=None, clip=None) -> BuiltEdit:
    """Load the generator (unless given), the CLIP that goes with it (`factory.clip_for`), the identity net
    where the edit uses one, and build the engine."""
    from styleclip import factory
    from styleclip.types import Prompt

    r = settings.request
    say = notice or (lambda line: None)
    notices: list[str] = []

    def tell(line: str) -> None:
        notices.append(line)
        say(line)

    if r.checkpoint_min_res is not None:  # less memory asked for: freed memory goes back to the system
        from styleclip.util.runtime import keep_freed_memory

        keep_freed_memory(False)
    g = generator if generator is not None else factory.load_generator(
        r.checkpoint if r.checkpoint is not None else settings.model_name, device=r.device)
    ref = None
    if r.target_image is not None:
        from styleclip.util.imaging import load_reference_image

        ref = load_reference_image(r.target_image, g.config.size)
    prompt = Prompt(settings.prompt, neutral=settings.neutral, strength=settings.strength, image=ref)
    dev = g.w_avg.device
    if clip is None:
        clip = factory.load_clip(factory.clip_for(g, model=settings.model_name, checkpoint=r.checkpoint), device=dev)
    wants = settings.wants_identity
    if r.checkpoint is not None and settings.engine == "optimize" and settings.options["id_lambda"] > 0:
        described = factory.describe_checkpoint(g, r.checkpoint)
        if not described.faces:
            tell(f"notice: identity loss off: {r.checkpoint} is not a face generator ({described.faces_reason}; "
                 f"{described.prepared})")
            wants = settings.strength_mode != "fixed"
    settings_used = settings if wants == settings.wants_identity else dataclasses.replace(settings, wants_identity=wants)
    identity = load_identity(settings, dev, tell) if wants or r.image is not None else None  # photos: figures
    editor = build_editor(settings_used, g, clip, identity)
    if r.compile:
        tell("--compile: the first step compiles the optimization step (a minute or two; less when an earlier "
             "run left torch's compile cache), then the steps run faster")
    judge = _unrelated_judge(settings, dev) if r.image is None else None
    return BuiltEdit(settings_used, g, clip, identity, editor, prompt, judge, notices)


def _unrelated_judge(settings: EditSettings, device):
    """The model set's judge of unrelated attributes (toy-faces), or None."""
    if not settings.model.judge_unrelated or settings.request.checkpoint is not None:
        return None
    from styleclip.factory import load_unrelated_judge

    return load_unrelated_judge(device)


def judge_note(built: BuiltEdit) -> Optional[str]:
    """What the unrelated-attribute figures mean, where they are given."""
    return getattr(built.judge, "note", None) if built.judge is not None else None


# ---- run -------------------------------------------------------------------------------------------------
@dataclass
class SourceEdit:
    """One source's edit: img [3,H,W], its latent (W+ [1,num_ws,D] or S-space list), figures, files."""

    label: str
    image: object
    source_image: object
    latent: object
    metrics: dict
    unrelated: Optional[tuple] = None
    files: list = field(default_factory=list)

    def line(self) -> str:
        """'seed0: CLIP similarity 0.210 -> 0.250, identity similarity 0.900 (...)'."""
        m = self.metrics
        text = f"{self.label}: CLIP similarity {m['clip_before']:.3f} -> {m['clip_after']:.3f}"
        if "identity_similarity" in m:
            text += f", identity similarity {m['identity_similarity']:.3f}"
        if self.unrelated is not None:
            kept, total, changed = self.unrelated
            text += f", unrelated attributes kept {kept}/{total}" + (f" ({'; '.join(changed)})" if changed else "")
        if "channels_kept" in m:
            text += f" ({m['channels_kept']} channels, beta {m['beta']:.2f}, alpha {m['alpha']:g})"
        elif "strength" in m:
            text += f" (strength {m['strength']:g})"
        if "gain_reached" in m:
            text += ", CLIP gain " + ("reached" if m["gain_reached"] else "not reached")
        return text


@dataclass
class EditRun:
    """What a run did: per-source edits, the folder written (None when nothing was) and the latent spaces."""

    settings: EditSettings
    edits: list[SourceEdit]
    folder: Optional[Path]
    spaces: set = field(default_factory=set)

    def summary(self) -> str:
        """'wrote 2 edit(s) to F/: <label>_edited.png, ... for <label> = seed0, seed1 (latent in W+ space)'."""
        n = len(self.edits)
        first = self.edits[0].label
        kinds = ", ".join(p.name.replace(first, "<label>" if n > 1 else first, 1) for p in self.edits[0].files)
        labels = [e.label for e in self.edits]
        which = f" for <label> = {', '.join(labels[:4])}{', ...' if n > 4 else ''}" if n > 1 else ""
        return f"wrote {n} edit(s) to {self.folder}/: {kinds}{which} (latent in {' and '.join(sorted(self.spaces))} space)"


BatchProgress = Callable[[str, int, int, Optional[dict]], None]  # (batch label, done, total, losses)


def sources(built: BuiltEdit):
    """The Latent the request names (seeds, a latent file or a folder of them)."""
    from styleclip.sources import latents_from_dir, latents_from_seeds, load_latent_file, parse_seeds

    r, g = built.settings.request, built.generator
    if r.latent is not None:
        return load_latent_file(r.latent, g)
    if r.latents is not None:
        return latents_from_dir(r.latents, g)
    return latents_from_seeds(g, parse_seeds(r.seeds) if r.seeds is not None else [r.seed or 0], r.truncation)


def run(built: BuiltEdit, *, progress: Optional[BatchProgress] = None,
        on_edit: Optional[Callable[[SourceEdit], None]] = None) -> EditRun:
    """Edit every source in batches of `batch_size`; with an output folder, write per source
    <label>_edited.png, <label>_before_after.png, <label>_latent.pt (and <label>.gif with `gif`), all renamed
    into place only when every edit succeeded. `progress(batch, done, total, losses)` per step;
    `on_edit(SourceEdit)` as each source is done."""
    from styleclip.sources import save_latent
    from styleclip.util import checks, outputs
    from styleclip.util.imaging import grid, save_gif, to_pil, upscale_for_viewing

    s, r, editor = built.settings, built.settings.request, built.editor
    source = sources(built)
    n = source.batch_size
    edits: list[SourceEdit] = []
    spaces: set = set()
    out = s.folder
    staged = outputs.Outputs()
    with staged:
        for lo in range(0, n, r.batch_size):
            hi = min(lo + r.batch_size, n)
            part = source.rows(lo, hi)
            kind = "mapper" if s.engine == "universal" else s.engine
            desc = f"{kind} {part.labels[0]}" + (f"..{part.labels[-1]}" if hi - lo > 1 else "")
            if progress is not None:  # the step count is known up front: optimize's steps, else one
                progress(desc, 0, s.options["steps"] if s.engine == "optimize" else 1, None)

            def step(done, total, desc=desc):
                if progress is not None:
                    losses = getattr(editor, "last_losses", None)
                    progress(desc, done, total, dict(losses) if losses else None)

            result = editor.edit(part, built.prompt, progress=step)
            latents = [result.latent] if hasattr(result.latent, "shape") else list(result.latent)
            checks.finite_tensors([result.image, *latents], f"the {kind} edit of {desc}")
            unrelated = built.judge(result.source_image, result.image, built.prompt) \
                if built.judge is not None and result.source_image is not None else None
            for j, label in enumerate(part.labels):
                lat = result.latent[j:j + 1] if hasattr(result.latent, "shape") else [x[j:j + 1] for x in result.latent]
                spaces.add("S" if isinstance(lat, list) else "W+")
                edit = SourceEdit(label, result.image[j], result.source_image[j] if result.source_image is not None
                                  else None, lat, _row(result.metrics, j), unrelated[j] if unrelated else None)
                if out is not None:
                    name = outputs.short_name(label, 150)
                    files = [out / f"{name}_edited.png", out / f"{name}_before_after.png", out / f"{name}_latent.pt"]
                    staged.image(to_pil(result.image[j]), files[0])
                    staged.image(upscale_for_viewing(grid([result.source_image[j], result.image[j]])), files[1])
                    staged.write(files[2], lambda tmp, lat=lat: save_latent(lat, tmp))
                    if r.gif and result.frames:
                        frames = [upscale_for_viewing(to_pil(f[j])) for f in result.frames]
                        files.append(staged.write(out / f"{name}.gif", lambda tmp, fr=frames: save_gif(fr, tmp)))
                    edit.files = files
                edits.append(edit)
                if on_edit is not None:
                    on_edit(edit)
    return EditRun(s, edits, out, spaces)


def _row(metrics: dict, j: int) -> dict:
    """Source j's figures from per-batch metrics (lists are per source; scalars are shared)."""
    return {k: (v[j] if isinstance(v, list) and len(v) > j else v) for k, v in metrics.items()}


# ---- photos ----------------------------------------------------------------------------------------------
@dataclass
class PhotoRun:
    """A photo edit: the PhotoEdit (faces, inversions, the pasted-back photo) and the files written."""

    settings: EditSettings
    result: object
    paths: dict
    stem: str


def invert_options(settings: EditSettings, generator, identity, *, use_cache: bool = True) -> dict:
    """`invert_face`'s keyword arguments: the model set's projector / PTI settings, the request's steps."""
    from styleclip.photo import pti
    from styleclip.photo.fidelity import FidelityTarget
    from styleclip.photo.invert import InversionConfig, default_encoder

    r, presets = settings.request, settings.model.presets
    proj = {**presets.projector.overrides(), **({"steps": r.invert_steps} if r.invert_steps is not None else {})}
    tune = {**presets.pti.overrides(), **({"steps": r.pti_steps} if r.pti_steps is not None else {})}
    return dict(encoder=default_encoder(generator, None, device=generator.w_avg.device), identity=identity,
                projector=InversionConfig(**proj), pti=pti.PTIConfig(**tune),
                target=FidelityTarget(psnr=r.target_psnr, identity=r.target_identity), use_cache=use_cache)


def photo_warning(settings: EditSettings) -> Optional[str]:
    """Why this model set cannot edit a real photo well, or None."""
    return None if settings.request.checkpoint is not None else settings.model.photo_warning()


def run_photo(built: BuiltEdit, *, progress=None, on_face=None) -> PhotoRun:
    """Invert and edit the chosen faces of the request's photo, paste the edits back, save everything with the
    figures into the run folder (`pipelines.photo`)."""
    from styleclip.photo.faces import load_image
    from styleclip.pipelines.photo import edit_photo, find_faces, parse_face, save_photo_edit

    s, r, g = built.settings, built.settings.request, built.generator
    photo = load_image(r.image)
    aligned = find_faces(photo, size=g.config.size, face=parse_face(r.face), source=str(r.image))
    result = edit_photo(photo, aligned, g, built.editor, built.prompt, invert=r.invert,
                        invert_options=invert_options(s, g, built.identity), on_face=on_face, progress=progress)
    paths = save_photo_edit(s.folder, Path(r.image).stem, result, crop_only=r.crop_only) if s.folder else {}
    return PhotoRun(s, result, paths, Path(r.image).stem)


def edit(request: EditRequest, *, notice: Optional[Notice] = None, progress: Optional[BatchProgress] = None):
    """The whole plan for a Python caller: resolve, build, run. An EditRun (or a PhotoRun for an image
    source); files go into the run's own folder under `request.out` (None: nothing written)."""
    settings = resolve(request, notice=notice)
    built = build(settings, notice=notice)
    if request.image is not None:
        return run_photo(built)
    return run(built, progress=progress)
