"""The Editor protocol and the registry of engines."""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from styleclip.errors import InputError
from styleclip.types import EditResult, Latent, ProgressFn, Prompt


@runtime_checkable
class Editor(Protocol):
    """An editing engine: `edit(latent, prompt)` -> EditResult. Engine-only knobs live in its frozen Config."""

    name: str

    def edit(self, latent: Latent, prompt: Prompt, *, progress: ProgressFn | None = None) -> EditResult: ...


ENGINES: dict[str, Callable[..., Editor]] = {}


def register_engine(name: str):
    """Class decorator: make an engine constructible by name through `factory.create_editor`."""

    def deco(cls):
        ENGINES[name] = cls
        cls.name = name
        return cls

    return deco


def report(progress: ProgressFn | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def start_or_resume(trainer, out_dir, resume: bool) -> None:
    """Before a training run: with `resume`, load the run's state from `out_dir` (an error if there is none);
    without, refuse to start over a run that `out_dir` already holds."""
    from pathlib import Path

    from styleclip.errors import InputError

    if resume:
        if out_dir is None:
            raise InputError("resume needs the output folder of the run to continue")
        if not trainer.resume():
            raise InputError(f"nothing to resume: {Path(out_dir) / 'train_state.pt'} does not exist")
    elif out_dir is not None and (Path(out_dir) / "train_state.pt").exists():
        raise InputError(f"{out_dir} already holds a training run; pass --resume to continue it or choose "
                         "another --out")


# ---- mapper engines ---------------------------------------------------------------------------------------
def check_fits_generator(mapper, generator, what: str) -> None:
    """A mapper's W+ shape must be the generator's (InputError)."""
    if mapper.num_ws != generator.num_ws or mapper.style_dim != generator.config.style_dim:
        raise InputError(f"the {what} is for W+ [{mapper.num_ws},{mapper.style_dim}] but the generator has "
                         f"[{generator.num_ws},{generator.config.style_dim}]")


def unpack_mapper(m) -> tuple[Any, dict]:
    """(network, info) from a network or a loaded mapper file (anything with `.mapper` and `.info`, such as
    `store.mappers.MapperFile`)."""
    import torch

    if isinstance(m, torch.nn.Module):
        return m, {}
    if hasattr(m, "mapper") and isinstance(getattr(m, "info", None), dict):
        return m.mapper, dict(m.info)
    return m, {}
