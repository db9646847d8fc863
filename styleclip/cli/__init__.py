"""The `styleclip` command line: parse options, call the library, save outputs. No algorithms here.

One module per command group; this one assembles them into the Typer app, grouped in help panels. Importing it
(and `styleclip --help`) loads no torch: commands import the library inside their bodies.
"""
from __future__ import annotations

import sys

import typer

from styleclip.cli import edit, generator, photo, serve, stylespace, toy, train, weights
from styleclip.cli.common import OneLineErrors

app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True,
                  help="Text-driven editing of StyleGAN2 images (StyleCLIP).\n\n"
                       "`styleclip COMMAND --help` shows a command's options.")

EDIT, PHOTOS, MODELS, TRAINING, APP = "Edit", "Photos", "Models and weights", "Training", "App"

app.add_typer(edit.edit_app, name="edit", rich_help_panel=EDIT)
app.command(rich_help_panel=EDIT)(stylespace.sweep)
app.command(rich_help_panel=PHOTOS)(photo.faces)
app.command(rich_help_panel=PHOTOS)(photo.invert)
app.command(rich_help_panel=MODELS)(generator.generate)
app.command(rich_help_panel=MODELS)(generator.convert)
app.add_typer(weights.weights_app, name="weights", rich_help_panel=MODELS)
app.command(rich_help_panel=MODELS)(stylespace.prepare)
app.command(rich_help_panel=MODELS)(stylespace.relevance)
app.command("train-mapper", rich_help_panel=TRAINING)(train.train_mapper_command)
app.add_typer(toy.toy_app, name="toy", rich_help_panel=TRAINING)
app.command(rich_help_panel=APP)(serve.serve)


def main():
    """The `styleclip` command: process settings for speed (styleclip.util.runtime), then the Typer app."""
    from styleclip.util.runtime import keep_freed_memory

    keep_freed_memory()
    app(prog_name="styleclip")  # also under `python -m styleclip`, so usage lines name the command to type


if __name__ == "__main__":
    sys.exit(main())
