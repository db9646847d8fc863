"""The model sets (`--model NAME`) as records: which weights (by store name), how the engines are tuned
for them, what the app offers. torch-free."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from styleclip.models.presets import (PAPER, AutoStrengthPreset, GlobalPreset, Presets, PTIPreset,
                                      ProjectorPreset, UniversalPreset)
from styleclip.store import registry

ENGINES = ("optimize", "global", "mapper", "universal")
PAPER_ENGINE = "optimize"  # the paper's first method: the default engine unless a model set names another


@dataclass(frozen=True)
class Examples:
    """Example prompts the app offers: global rows [neutral, target] or [neutral, target, alpha, beta],
    optimize rows [prompt]. Each world can only show what it has (toy faces have no grey hair)."""

    global_: tuple[tuple, ...] = ()
    optimize: tuple[tuple, ...] = ()


FFHQ_EXAMPLES = Examples(  # the StyleCLIP notebooks' settings
    global_=(("a face", "a smiling face", 4.1, 0.15), ("a face", "a face with glasses", 4.1, 0.13),
             ("a face", "a face with grey hair", 5.0, 0.15), ("a face with hair", "a face with curly hair", 4.0, 0.12),
             ("a face", "an angry face", 4.0, 0.15)),
    optimize=(("a person with purple hair",), ("a face with a mohawk hairstyle",), ("an old person with grey hair",),
              ("a surprised face",)))

TOY_EXAMPLES = Examples(
    global_=tuple(("a face", t) for t in ("a face with blond hair", "a face with a beard", "a face with purple hair",
                                          "a face with long hair", "a surprised face")),
    optimize=(("a face wearing glasses",), ("a face with purple hair",), ("a face with a mohawk",),
              ("a surprised face",)))


@dataclass(frozen=True)
class ModelSet:
    """What `--model NAME` selects. generator / clip / identity: store weight names (identity None: none);
    builtin: how the factory builds its nets without files ('debug': tiny random, 'toy': the embedded toy
    models; None: registry weights or a checkpoint)."""

    name: str
    description: str
    generator: str
    clip: str
    identity: Optional[str]
    builtin: Optional[str] = None
    default_engine: str = PAPER_ENGINE
    photo_model: bool = True  # can reconstruct a real photo
    not_photo_reason: str = ""
    judge_unrelated: bool = False  # the toy evaluation classifier reports unrelated attributes kept
    identity_figure: bool = False  # load the identity net for every engine, as a figure (cheap built-ins)
    presets: Presets = PAPER
    examples: Examples = FFHQ_EXAMPLES
    app_description: str = ""  # the app's one-line description (default: `description`)

    def photo_warning(self) -> Optional[str]:
        """The warning for a real photo given to a set that cannot reconstruct one, or None."""
        if self.photo_model:
            return None
        return (f"warning: --model {self.name} is not a photo model ({self.not_photo_reason}): a real photo cannot "
                "be reconstructed by it, so the inversion and any edit of it will not look like the person; use "
                "--model ffhq for photos")


@dataclass(frozen=True)
class Checkpoint:
    """A generator given by file (`--checkpoint`, or a path as the app's model). clip / faces: what a
    `styleclip prepare` of this generator recorded (clip None: the default CLIP; faces False: the identity
    net is off)."""

    path: Path
    clip: Optional[str] = None
    faces: bool = True
    faces_reason: str = ""
    prepared: Optional[Path] = None  # the prepare run's folder


def _weights(name: str) -> dict:
    """The store's weight names of model set `name`."""
    ms = registry.MODEL_SETS[name]
    return dict(name=name, description=ms.description, generator=ms.generator, clip=ms.clip, identity=ms.identity)


_TOY_MIN_CHANGE = 6.0  # the universal mapper's W+ change floored at this norm on toy-faces (see universal below)

# toy-faces: tuned where the paper's FFHQ settings do not carry over (the toy W+ has another scale); measured by
# benchmarks/edit_quality.py (docs/benchmarks.md), photo settings by benchmarks/photo_inversion.py.
TOY_PRESETS = Presets(
    # l2 0.002: success 0.63 vs 0.46 at 0.008; clip_views 4: 0.64 -> 0.79 for 1.8x the time; init universal:
    # good edits 0.79 -> 0.89 (identity kept on all)
    optimize=replace(PAPER.optimize, steps=50, lr=0.1, l2_lambda=0.002, id_lambda=0.1, clip_views=4,
                     init="universal", init_min_change=_TOY_MIN_CHANGE),
    # ridge-decorrelated, identity-damped delta_s at alpha 4, beta 0.15 (best fixed setting): good edits
    # 0.60 -> 0.75; under the identity budget alpha 5, beta 0.1: 0.85 with identity kept on all
    global_=GlobalPreset(strength=4.0, beta=0.15, ridge=0.2, identity_damping=0.005, keep_identity=True,
                         budget_strength=5.0, budget_beta=0.1),
    # beta 0.1: good edits 0.79 -> 0.81, unrelated kept 0.97 -> 0.92; min_change 6: held-out success 0.74 -> 0.79
    universal=UniversalPreset(beta=0.1, min_change=_TOY_MIN_CHANGE),
    # 1.5 x the gain target: global success 0.55 -> 0.63, identity kept on 99%
    auto_strength=AutoStrengthPreset(gain_scale=1.5, measured_threshold=True),
    # 64 px: lr 0.02 (the toy W is 5x narrower than FFHQ's); PTI 500 steps, warm-up, cosine, no locality term
    projector=ProjectorPreset(steps=100, lr=0.02),
    pti=PTIPreset(steps=500, lr=1e-3, warmup=30, cosine=True, locality_every=0))

FFHQ = ModelSet(**_weights("ffhq"))

TOY_FACES = ModelSet(**_weights("toy-faces"), builtin="toy", default_engine="universal",  # edits best here
                     photo_model=False, not_photo_reason="64-px cartoon faces", judge_unrelated=True,
                     identity_figure=True, presets=TOY_PRESETS, examples=TOY_EXAMPLES)

DEBUG = ModelSet(**_weights("debug"), builtin="debug", photo_model=False, not_photo_reason="random weights",
                 identity_figure=True,
                 presets=replace(PAPER, pti=PTIPreset(steps=30, lr=1e-3, locality_every=10)),  # smoke runs only
                 app_description="tiny random networks, no download (the faces are noise-like: for trying the app)")

# a generator given by file: the paper's settings, FFHQ's CLIP unless `styleclip prepare` recorded another
CHECKPOINT = ModelSet(name="checkpoint", description="a generator checkpoint", generator="", clip=FFHQ.clip,
                      identity=FFHQ.identity)

MODEL_SETS: dict[str, ModelSet] = {m.name: m for m in (FFHQ, TOY_FACES, DEBUG)}
DEFAULT_MODEL = registry.DEFAULT_MODEL
FALLBACK_MODEL = registry.FALLBACK_MODEL


def get(name: str) -> ModelSet:
    """The model set called `name`; an unknown name is a one-line error listing the known ones."""
    from styleclip.errors import InputError

    try:
        return MODEL_SETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(str(name), list(MODEL_SETS), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise InputError(f"unknown model {name!r} (known: {', '.join(sorted(MODEL_SETS))}){hint}") from None


def for_source(model: Optional[str], checkpoint=None) -> ModelSet:
    """The record whose settings apply: the named model set, or CHECKPOINT for a generator file."""
    if checkpoint is not None or model is None:
        return CHECKPOINT
    if str(model) in MODEL_SETS:
        return MODEL_SETS[str(model)]
    return CHECKPOINT  # a path given as the model (the app, load_generator)


def default_model_name(notice=None, *, download: bool = True) -> str:
    """The model set to use when none is named: 'ffhq' when its generator weights are present (or, with
    `download`, can be fetched), else the embedded fallback (calling `notice(one_line)` to say so)."""
    from styleclip.errors import WeightsMissingError

    weight = MODEL_SETS[DEFAULT_MODEL].generator
    if registry.find(weight) is not None:
        return DEFAULT_MODEL
    if not download and not registry.offline():  # a dry run: a real run downloads it (or falls back)
        if notice is not None:
            notice(f"note: the FFHQ weights are not here yet: a run downloads them (about 1 GB) or, where that "
                   f"fails, uses the embedded '{FALLBACK_MODEL}' model")
        return DEFAULT_MODEL
    try:
        if not download:
            raise WeightsMissingError(registry.OFFLINE_REASON)
        registry.ensure(weight)
        return DEFAULT_MODEL
    except WeightsMissingError:
        reason = "offline" if registry.offline() else "download failed"
        if notice is not None:
            spec = registry.get_spec(weight)
            notice(f"notice: no FFHQ weights ({spec.filename}: {reason}); using the embedded "
                   f"'{FALLBACK_MODEL}' model. For real faces run `styleclip weights download ffhq` "
                   f"or put {spec.filename} in {registry.cache_dir()}.")
        return FALLBACK_MODEL
