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



@app.command("train-mapper")
@friendly
def train_mapper_command(
    prompt: str = typer.Option(..., help="What the mapper edits toward, e.g. 'mohawk'."),
    latents: Optional[Path] = typer.Option(None, help="Training latents: .pt tensor [N,num_ws,512] (e.g. "
                                                      "e4e-inverted faces). Default: sampled from the generator."),
    val_latents: Optional[Path] = typer.Option(None, help="Validation latents (.pt). Default: held out from "
                                                          "--latents, or sampled."),
    num_latents: int = typer.Option(5000, help="Sampled training latents when no --latents file is given."),
    steps: int = typer.Option(50_000, help="Training steps (the paper: 50,000)."),
    batch_size: int = typer.Option(2, help="Latents per step."),
    lr: float = typer.Option(0.5, help="Learning rate."),
    optimizer: str = typer.Option("ranger", help="ranger (RAdam + Lookahead + GC, the paper's) or adam."),
    clip_lambda: float = typer.Option(1.0, help="Weight of the CLIP loss."),
    l2_lambda: float = typer.Option(0.8, help="Weight of the latent L2 loss."),
    id_lambda: float = typer.Option(0.1, help="Weight of the identity loss (off without an identity network)."),
    no_coarse: bool = typer.Option(False, "--no-coarse", help="No coarse sub-mapper (W+ rows of 4-8 px)."),
    no_medium: bool = typer.Option(False, "--no-medium", help="No medium sub-mapper (16-32 px)."),
    no_fine: bool = typer.Option(False, "--no-fine", help="No fine sub-mapper (64 px and up; keeps colours)."),
    val_interval: int = typer.Option(2000, help="Validate (and keep the best mapper) every N steps."),
    save_interval: int = typer.Option(2000, help="Write a resumable checkpoint every N steps."),
    image_interval: int = typer.Option(2000, help="Write a [source, edited] image grid every N steps."),
    seed: int = typer.Option(0, help="Seed of the sampled latents, the mapper's initial weights and shuffling."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: mappers/<prompt>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    checkpoint: Optional[Path] = typer.Option(None, help="Generator checkpoint (.pt, .pkl, .safetensors)."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
):
    """Train a latent mapper for one prompt (StyleCLIP method 2)."""
    from tqdm import tqdm

    from . import factory
    from .editors.mapper import normalize_name
    from .errors import StyleClipError
    from .editors.mapper_training import MapperTrainConfig, load_latents, train_mapper

    config = MapperTrainConfig(steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer,
                               clip_lambda=clip_lambda, l2_lambda=l2_lambda, id_lambda=id_lambda,
                               no_coarse=no_coarse, no_medium=no_medium, no_fine=no_fine, num_latents=num_latents,
                               val_interval=val_interval, save_interval=save_interval,
                               image_interval=image_interval, seed=seed)
    g = _generator(model, checkpoint, device)
    dev = g.w_avg.device
    clip = factory.load_clip(model, device=dev)
    identity = None
    if id_lambda > 0:
        load_identity = getattr(factory, "load_identity", None)
        if load_identity is None:
            typer.echo("notice: no identity network available in this version; identity loss off", err=True)
        else:
            try:
                identity = load_identity(model or "ffhq", device=dev)
            except StyleClipError as e:
                typer.echo(f"notice: identity loss off ({' '.join(str(e).split())})", err=True)
    kw = dict(num_ws=g.num_ws, style_dim=g.config.style_dim)
    train = load_latents(latents, **kw) if latents is not None else None
    val = load_latents(val_latents, **kw) if val_latents is not None else None
    out = out or Path("mappers") / (normalize_name(prompt) or "mapper")
    notes = {"latents": str(latents) if latents is not None else f"sampled ({num_latents}, seed {seed})",
             "val_latents": str(val_latents) if val_latents is not None else None}
    bar = tqdm(total=steps, unit="step", dynamic_ncols=True)

    def progress(done, total):
        bar.n = done
        bar.refresh()

    def log(step, record):
        bar.set_postfix({k: f"{record[k]:.4f}" for k in ("loss", "clip", "l2", "id", "val_loss") if k in record},
                        refresh=False)

    try:
        result = train_mapper(g, clip, prompt, identity=identity, config=config, latents=train, val_latents=val,
                              out_dir=out, resume=resume, progress=progress, log=log, notes=notes)
    finally:
        bar.close()
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    typer.echo(f"wrote {result.best_path} (best validation loss {best}); run folder {out} "
               f"(step {result.step}; continue with --resume --out {out})")


def main():
    app()


if __name__ == "__main__":
    sys.exit(main())
