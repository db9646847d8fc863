"""The `styleclip` command line: parse options, call the library, save outputs. No algorithms here.

One module per command group; this one assembles them into the Typer app.
"""
from __future__ import annotations

import sys

import typer

from styleclip.cli import edit, generator, photo, serve, stylespace, toy, train, weights

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Text-driven editing of StyleGAN2 images (StyleCLIP).")

app.command()(generator.generate)
app.command()(generator.convert)
app.command()(edit.edit)
app.command()(photo.faces)
app.command()(photo.invert)
app.add_typer(weights.weights_app, name="weights")
app.command("train-mapper")(train.train_mapper_command)
app.command()(stylespace.relevance)
app.command()(stylespace.prepare)
app.command()(stylespace.sweep)
app.command()(serve.serve)
app.add_typer(toy.toy_app, name="toy")


def main():
    """The `styleclip` command: process settings for speed (styleclip.util.runtime), then the Typer app."""
    from styleclip.util.runtime import keep_freed_memory

    keep_freed_memory()
    app()


if __name__ == "__main__":
    sys.exit(main())
