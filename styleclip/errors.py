"""Errors a user can act on. Front ends print their message on one line and exit non-zero."""


class StyleClipError(Exception):
    """Base class: a problem with the user's input, files or environment (not a bug)."""


class CheckpointError(StyleClipError):
    """A weight file is unreadable, truncated, of an unknown layout or refused for safety."""


class WeightsMissingError(StyleClipError):
    """A needed weight file is absent and could not be downloaded."""


class InputError(StyleClipError, ValueError):
    """Bad user input: empty prompt, wrong-shaped latent, unreadable image, out-of-range option, ...
    (also a ValueError, which the library raised for these before)."""


class OutputError(StyleClipError):
    """An output path cannot be written: under a file, a folder where a file goes, unwritable, ..."""


class NumericalError(StyleClipError):
    """A computation produced NaN or infinite values (diverged); nothing is written from it."""


def summarize(items, n: int = 5) -> str:
    """'a, b, c (+2 more)': the first n items of a list for a one-line message."""
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's text on one line, shortened."""
    text = " ".join(str(e).split())
    return (text[:limit] + "...") if len(text) > limit else text or type(e).__name__
