"""The Editor protocol and the registry of engines."""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

from ..types import EditResult, Latent, ProgressFn, Prompt


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
