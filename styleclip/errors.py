"""Errors a user can act on. Front ends print their message on one line and exit non-zero."""


class StyleClipError(Exception):
    """Base class: a problem with the user's input, files or environment (not a bug)."""


class CheckpointError(StyleClipError):
    """A weight file is unreadable, truncated, of an unknown layout or refused for safety."""


class WeightsMissingError(StyleClipError):
    """A needed weight file is absent and could not be downloaded."""


class InputError(StyleClipError):
    """Bad user input: empty prompt, wrong-shaped latent, unreadable image, ..."""
