"""What every command shares: the one-line error contract, option bounds, model and generator choice, progress bars."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup


# Help texts and panels shared by the commands (one line each at 100 columns; details live in docs/).
MODEL_HELP = "Model set: ffhq, toy-faces (offline) or debug (tiny random)."
MODEL_DEFAULT = "ffhq, or toy-faces when FFHQ cannot be had"
CHECKPOINT_HELP = "Generator checkpoint (.pt, .pkl, .safetensors)."
DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto."
CLIP_HELP = "CLIP model."
CLIP_DEFAULT = "the model set's"
MODEL_PANEL = "Model and device"
OUTPUT_PANEL = "Output"


# The framework's own exception classes, found through typer.BadParameter: typer >= 0.29 vendors click's, older
# typer uses click's (no `import click`, which a new typer does not install).
USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
FRAMEWORK_SIGNALS = (typer.Exit, typer.Abort, next(c for c in typer.BadParameter.__mro__
                                                   if c.__name__ == "ClickException"))


class OneLineErrors(TyperGroup):
    """The root command group: a usage mistake anywhere below it (unknown command or option, bad or missing
    value) ends with one `error:` line on stderr, a suggestion where a name is close, and exit code 1 (click
    would draw a box and exit 2). Mistakes of the command line itself are found before any command runs."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except USAGE_ERROR as e:
            _usage_exit(e)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USAGE_ERROR as e:
            _usage_exit(e)


def _usage_exit(e) -> None:
    if type(e).__name__ == "NoArgsIsHelpError":  # a bare `styleclip` or group: the framework shows the help
        raise e
    typer.echo(f"error: {usage_message(e)}", err=True)
    raise typer.Exit(1)


def did_you_mean(name: str, choices) -> str:
    """'; did you mean X?' for the closest of `choices` to `name`, or '' when none is close."""
    import difflib

    close = difflib.get_close_matches(name, [str(c) for c in choices], n=2)
    close = close[:1] + [c for c in close[1:] if difflib.SequenceMatcher(None, name, c).ratio() >= 0.8]
    return f"; did you mean {' or '.join(close)}?" if close else ""


def usage_message(e) -> str:
    """A usage error of the framework as one line of plain words, naming the command and the closest valid name."""
    import re

    ctx, names = e.ctx, []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    where = " ".join(["styleclip", *reversed(names)])
    see = f" (see `{where} --help`)" if e.ctx is not None else ""
    if type(e).__name__ == "NoSuchOption":
        hint = did_you_mean(e.option_name, e.possibilities or ())
        return f"no such option {e.option_name} for `{where}`" + (hint or see)
    text = " ".join(e.message.split()) if e.message else ""
    unknown = re.match(r"No such command '(.*?)'", text)
    if unknown and e.ctx is not None:
        group = e.ctx.command
        known = [n for n, c in getattr(group, "commands", {}).items() if not c.hidden]
        hint = did_you_mean(unknown.group(1), known)
        return f"no such command {unknown.group(1)!r} for `{where}`" + (hint or ": one of " + ", ".join(known))
    text = " ".join(e.format_message().replace("Value error, ", "").split()).rstrip(".")
    text = text[:1].lower() + text[1:]
    bad = re.search(r"'([^']*)' is not one of (.*)$", text)
    if bad:  # a value outside a fixed set, whose names the message lists
        return text + did_you_mean(bad.group(1), re.findall(r"'([^']*)'", bad.group(2)))
    return text + see


def friendly(fn):
    """User mistakes, bad files and failed computations end with one `error:` line on stderr and exit code 1,
    never a traceback (STYLECLIP_DEBUG=1 shows the traceback of an unexpected error)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import os

        from styleclip.errors import StyleClipError

        try:
            return fn(*args, **kwargs)
        except FRAMEWORK_SIGNALS:
            raise
        except (StyleClipError, ValueError, OSError) as e:
            message = " ".join(str(e).split()) or type(e).__name__
        except MemoryError:
            message = "out of memory; use smaller sizes or batches"
        except RecursionError:
            message = "input nested too deeply to process"
        except Exception as e:  # a bug, but still one line: the contract holds for every input
            if os.environ.get("STYLECLIP_DEBUG"):
                raise
            message = (f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:300]} (set STYLECLIP_DEBUG=1 "
                       "for the traceback and please report it)")
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)

    return wrapper


# Bounds of the numeric options (name -> lo, hi): checked before anything is loaded. Integers have int bounds.
LIMITS = {
    "seed": (0, 2 ** 63 - 1), "steps": (1, 1_000_000), "distill_steps": (0, 1_000_000), "invert_steps": (1, 100_000), "batch_size": (1, 256),
    "face_index": (0, 10_000), "checkpoint_min_res": (4, 8192), "size": (16, 2048), "images": (1, 100_000),
    "stats_samples": (2, 1_000_000), "num_latents": (1, 1_000_000), "val_interval": (1, 10_000_000),
    "save_interval": (1, 10_000_000), "image_interval": (1, 10_000_000), "ckpt_every": (1, 10_000_000),
    "eval_every": (0, 10_000_000), "threads": (1, 1024), "eval_size": (1, 10_000), "n": (1, 10_000),
    "partial_captions": (0.0, 1.0), "start_step": (0, 100_000_000), "port": (1, 65_535),
    "truncation": (-2.0, 2.0), "strength": (-100.0, 100.0), "alpha": (-100.0, 100.0), "beta": (0.0, 1.0),
    "lr": (0.0, 10.0), "l2_lambda": (0.0, 1e4), "id_lambda": (0.0, 1e4), "clip_lambda": (0.0, 1e4),
    "minutes": (0.0, 1e6), "clip_views": (0, 64),
}


OPEN_LO = {"lr", "minutes"}  # must be above their lower bound


def _check(**values) -> None:
    """Each given option (None = not given) within LIMITS, finite, of the right type; one InputError line."""
    from styleclip.util import checks

    for name, value in values.items():
        if value is None:
            continue
        lo, hi = LIMITS[name]
        checks.number(value, "--" + name.replace("_", "-"), lo=lo, hi=hi, integer=isinstance(lo, int),
                      open_lo=name in OPEN_LO)


def _check_device(device: str) -> None:
    from styleclip.errors import InputError
    from styleclip.factory import resolve_device

    try:
        resolve_device(device)
    except InputError as e:
        raise InputError(f"{e}{did_you_mean(device, ('auto', 'cpu', 'cuda', 'mps'))}") from None


def _check_text(**texts) -> None:
    from styleclip.errors import InputError
    from styleclip.types import MAX_PROMPT_CHARS

    for name, text in texts.items():
        if text is not None and len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"--{name} is {len(text)} characters long; at most {MAX_PROMPT_CHARS}")


def _model(model: Optional[str], checkpoint: Optional[Path]) -> Optional[str]:
    """The model set named, or with neither --model nor --checkpoint: FFHQ if available, else toy-faces."""
    if model is not None or checkpoint is not None:
        return model
    from styleclip.factory import default_model

    return default_model(notice=lambda line: typer.echo(line, err=True))


def _generator(model: Optional[str], checkpoint: Optional[Path], device: str):
    from styleclip.factory import load_generator

    return load_generator(checkpoint if checkpoint is not None else model, device=device)


def _photo_warning(model: Optional[str]) -> None:
    from styleclip import models

    record = models.MODEL_SETS.get(str(model))
    warning = record.photo_warning() if record is not None else None
    if warning:
        typer.echo(warning, err=True)


class _StepBar:
    """A stderr progress bar for `progress(done, total)` callbacks whose total is known up front (no 0/1 start,
    and an ETA from the steps actually taken, not from the set-up before the first)."""

    def __init__(self, label: str, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=max(1, total), desc=label, unit="step", dynamic_ncols=True, file=sys.stderr)

    def __call__(self, done: int, total: int, postfix: Optional[dict] = None):
        if total != self.bar.total:
            self.bar.total = total
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self):
        self.bar.close()


def _identity(model: Optional[str], device):
    """The identity net of the model set, or None (with a notice) when it is not available."""
    from styleclip import factory

    loader = getattr(factory, "load_identity", None)
    if loader is None:
        return None
    from styleclip.errors import WeightsMissingError

    try:
        return loader(model, device=device)
    except WeightsMissingError as e:
        typer.echo(f"notice: identity loss off ({e})", err=True)
        return None


# ---- global directions: channel relevance and alpha/beta sweeps -------------------------------------
MAX_SWEEP = 32  # values per sweep axis


def _floats(text: str, name: str, kind: str) -> list[float]:
    """Comma-separated numbers, each within LIMITS[kind]."""
    from styleclip.util import checks

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, e.g. -5,0,5; got {text[:60]!r}") from None
    if not values:
        raise ValueError(f"{name} is empty")
    if len(values) > MAX_SWEEP:
        raise ValueError(f"{name} has {len(values)} values; at most {MAX_SWEEP}")
    lo, hi = LIMITS[kind]
    for v in values:
        checks.number(v, f"each value of {name}", lo=lo, hi=hi)
    return values


def _stats_for(g, stats: Optional[Path], samples: int):
    from styleclip.store.stylespace_files import load_or_compute_stats
    from styleclip.util.progress import EtaPrinter

    if stats is not None:
        return load_or_compute_stats(g, stats)
    return load_or_compute_stats(g, n=samples, progress=EtaPrinter("style statistics", _say))


def _join_world(device: str):
    """Under torchrun: join the process group (gloo on CPU, NCCL on CUDA) and use this rank's device."""
    from styleclip.util import distributed
    from styleclip.factory import resolve_device

    device = distributed.local_device(device)
    world = distributed.init_from_env(resolve_device(device))
    if world.size > 1:
        _say(f"torchrun: {world.size} processes ({world.backend})")
    return world, device


def _say(message: str) -> None:
    """A progress line on stderr, from rank 0 only under torchrun."""
    from styleclip.util.distributed import world

    if world().is_main:
        typer.echo(message, err=True)


def _clip_name(clip: Optional[str], model: Optional[str], checkpoint: Optional[Path], g) -> Optional[str]:
    """The CLIP to load: --clip, else the model set's, else the one a `styleclip prepare` of this checkpoint
    used, else the default (FFHQ's)."""
    if clip:
        return clip
    if checkpoint is None:
        return model
    from styleclip.store.prepared import find_prepared

    found = find_prepared(g)
    return found[1].get("clip") if found else None


def _not_faces_notice(g, checkpoint: Optional[Path]) -> Optional[str]:
    """For a checkpoint that `styleclip prepare` recorded as not a face generator: why the identity loss is off."""
    if checkpoint is None:
        return None
    from styleclip.store.prepared import find_prepared

    found = find_prepared(g)
    if found is None or found[1].get("faces", True):
        return None
    return (f"notice: identity loss off: {checkpoint} is not a face generator "
            f"({found[1].get('faces_reason', 'recorded by styleclip prepare')}; {found[0]})")
