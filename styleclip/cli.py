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


@app.command()
@friendly
def faces(
    photo: Path = typer.Argument(..., help="A photo (JPEG, PNG, ...)."),
    out: Optional[Path] = typer.Option(None, help="Write the FFHQ-aligned crops here (face_<index>.png)."),
    size: int = typer.Option(256, help="Side of the aligned crops in pixels."),
):
    """List the faces of a photo (index, box, probability), largest first; optionally save aligned crops."""
    from .errors import InputError
    from .faces import aligned_faces

    found, crops = aligned_faces(photo, size=size)
    if not found:
        raise InputError(f"no face found in {photo}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for face, crop in zip(found, crops):
        x1, y1, x2, y2 = face.box
        line = f"{face.index}  box=({x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f})  probability={face.probability:.3f}"
        if out is not None:
            path = out / f"face_{face.index}.png"
            crop.image.save(path)
            line += f"  -> {path}"
        typer.echo(line)


@app.command()
@friendly
def invert(
    photo: Path = typer.Argument(..., help="A photo with a face."),
    out: Path = typer.Option(Path("inversion"), help="Output folder: latent.pt, aligned.png, "
                             "reconstruction.png, side_by_side.png."),
    steps: int = typer.Option(500, help="Optimization steps (ignored with an encoder)."),
    face_index: Optional[int] = typer.Option(None, help="Which face (see `styleclip faces`); default the largest."),
    encoder: Optional[Path] = typer.Option(None, help="e4e checkpoint (e4e_ffhq_encode.pt): one forward pass "
                                           "instead of optimization. Default: used when found in the weights dirs."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Invert again even if this photo was inverted before."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    checkpoint: Optional[Path] = typer.Option(None, help="Generator checkpoint (.pt, .pkl, .safetensors)."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
):
    """Align a face of a photo and invert it into W+ (e4e encoder if available, else optimization)."""
    from .inversion import InversionConfig, default_encoder, invert_photo, save_inversion

    g = _generator(model, checkpoint, device)
    enc = default_encoder(g, encoder, device=g.w_avg.device)
    method = "e4e encoder" if enc is not None else f"optimization, {steps} steps"
    typer.echo(f"inverting {photo} ({method})", err=True)
    if enc is None and g.w_avg.device.type == "cpu" and g.config.size >= 512:
        typer.echo("note: optimizing a 1024-px generator on a CPU takes tens of seconds per step; "
                   "use --encoder e4e_ffhq_encode.pt or a GPU", err=True)
    with typer.progressbar(length=1 if enc is not None else steps, label="inverting", file=sys.stderr) as bar:
        done = [0]

        def progress(k, total):
            bar.update(k - done[0])
            done[0] = k

        w_plus, aligned, recon = invert_photo(photo, g, face_index=face_index, config=InversionConfig(steps=steps),
                                              encoder=enc, progress=progress, use_cache=not no_cache)
    paths = save_inversion(out, w_plus, aligned, recon)
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())} (W+ {list(w_plus.shape)})")


def main():
    app()


if __name__ == "__main__":
    sys.exit(main())
