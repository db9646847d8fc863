"""The `styleclip` command line: parse options, call the library, save outputs. No algorithms here."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Text-driven editing of StyleGAN2 images (StyleCLIP).")

MODEL_HELP = "Model set: 'ffhq' (real FFHQ weights), 'debug' (tiny random, no download), or a checkpoint path."


def friendly(fn):
    """User mistakes and missing files end with one line on stderr and exit code 1, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import StyleClipError

        try:
            return fn(*args, **kwargs)
        except (StyleClipError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
            typer.echo(f"error: {' '.join(str(e).split())}", err=True)
            raise typer.Exit(1)

    return wrapper


def _generator(model: Optional[str], checkpoint: Optional[Path], device: str):
    from .factory import load_generator

    return load_generator(checkpoint if checkpoint is not None else model, device=device)


@app.command()
@friendly
def generate(
    seed: int = typer.Option(0, help="Random seed of z."),
    truncation: float = typer.Option(0.7, help="Truncation psi toward the mean latent (1 = none)."),
    out: Path = typer.Option(Path("face.png"), help="Output image (PNG/JPG)."),
    save_latent: Optional[Path] = typer.Option(None, help="Also save the W+ latent (.pt) here."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    checkpoint: Optional[Path] = typer.Option(None, help="Generator checkpoint (.pt, .pkl, .safetensors)."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
):
    """Generate a face from a seed."""
    import torch

    from .imaging import to_pil

    g = _generator(model, checkpoint, device)
    dev = g.w_avg.device
    z = torch.randn(1, g.config.style_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    with torch.no_grad():
        w_plus = g.broadcast(g.mapping(z, truncation))
        img = g.synthesis(w_plus)
    out.parent.mkdir(parents=True, exist_ok=True)
    to_pil(img[0]).save(out)
    if save_latent is not None:
        torch.save(w_plus.cpu(), save_latent)
    typer.echo(f"wrote {out} ({g.config.size}x{g.config.size}, seed {seed}, truncation {truncation})")


@app.command()
@friendly
def convert(
    src: Path = typer.Argument(..., help="rosinality .pt, NVIDIA .pkl or our .safetensors"),
    dst: Path = typer.Argument(..., help="output .safetensors"),
):
    """Convert a generator checkpoint to styleclip's safetensors form (read without running its code)."""
    from .convert import build_generator, read_generator, save_generator

    config, state = read_generator(src)
    g = build_generator(config, state, source=str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_generator(g, dst)
    typer.echo(f"wrote {dst} (size {config.size}, style_dim {config.style_dim}, n_mlp {config.n_mlp})")


def main():
    app()


if __name__ == "__main__":
    sys.exit(main())
