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


# ---- global directions: channel relevance and alpha/beta sweeps -------------------------------------
def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, e.g. -5,0,5; got {text!r}") from None
    if not values:
        raise ValueError(f"{name} is empty")
    return values


def _stats_for(g, stats: Optional[Path], samples: int):
    from .stylespace import EtaPrinter, load_or_compute_stats

    if stats is not None:
        return load_or_compute_stats(g, stats)
    return load_or_compute_stats(g, n=samples, progress=EtaPrinter("style statistics", lambda m: typer.echo(m, err=True)))


@app.command()
@friendly
def relevance(
    out: Path = typer.Option(..., help="Output .npy (rows in layer/channel order, like the official fs3.npy)."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    checkpoint: Optional[Path] = typer.Option(None, help="Generator checkpoint (.pt, .pkl, .safetensors)."),
    clip: Optional[str] = typer.Option(None, help="CLIP model (default: the model set's)."),
    images: int = typer.Option(100, help="Sampled images per channel (official: 100)."),
    fast: bool = typer.Option(False, help="Linearised estimator (one Jacobian per image) instead of the exact protocol."),
    all_layers: bool = typer.Option(False, "--all-layers", help="Every conv layer, not only those up to 128 px."),
    stats: Optional[Path] = typer.Option(None, help="Style statistics file (default: cached or computed)."),
    stats_samples: int = typer.Option(100_000, help="Samples for the style statistics when computed."),
    batch_size: int = typer.Option(16, help="Image pairs per forward (exact protocol)."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
):
    """Compute channel relevance (fs3) for global directions; resumes an interrupted run."""
    from . import stylespace as ss
    from .factory import load_clip

    if images < 1:
        raise ValueError("--images must be at least 1")
    g = _generator(model, checkpoint, device)
    enc = load_clip(clip or (model if model and checkpoint is None else None), device=g.w_avg.device)
    st = _stats_for(g, stats, stats_samples)
    layers = ss.relevance_layers(g, all_layers=all_layers)
    n_ch = sum(g.layers[k].channels for k in layers)
    typer.echo(f"{'estimating' if fast else 'computing'} relevance of {n_ch} channels over {images} images", err=True)
    eta = ss.EtaPrinter("relevance", lambda m: typer.echo(m, err=True))
    ckpt = Path(str(out) + ".partial.npz")
    if fast:
        rel = ss.estimate_relevance(g, enc, st, n_images=images, layers=layers, checkpoint=ckpt, progress=eta)
    else:
        rel = ss.compute_relevance(g, enc, st, n_images=images, layers=layers, batch_size=batch_size,
                                   checkpoint=ckpt, progress=eta)
    rel.save(out)
    if images == ss.RELEVANCE_IMAGES and not all_layers:  # where the global engine looks for it
        rel.save(ss.relevance_cache_path(g, enc, "fast" if fast else "exact"))
    typer.echo(f"wrote {out} ({rel.fs3.shape[0]} x {rel.fs3.shape[1]}) and {out}.json")


@app.command()
@friendly
def sweep(
    prompt: str = typer.Option(..., help="Target text, e.g. 'a smiling face'."),
    neutral: str = typer.Option("a face", help="Neutral text."),
    alphas: str = typer.Option("-5,0,5", help="Comma-separated strengths (columns)."),
    betas: str = typer.Option("0.1,0.15,0.2", help="Comma-separated thresholds (rows)."),
    seed: int = typer.Option(0, help="Seed of the sampled face."),
    truncation: float = typer.Option(0.7, help="Truncation psi of the sampled face."),
    out: Path = typer.Option(Path("sweep.png"), help="Output grid image."),
    gif: bool = typer.Option(False, help="Also write an alpha animation (OUT with .gif) at the first beta."),
    relevance_file: Optional[Path] = typer.Option(None, "--relevance", help="fs3 .npy (ours or official)."),
    stats: Optional[Path] = typer.Option(None, help="Style statistics file (default: cached or computed)."),
    stats_samples: int = typer.Option(100_000, help="Samples for the style statistics when computed."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    checkpoint: Optional[Path] = typer.Option(None, help="Generator checkpoint (.pt, .pkl, .safetensors)."),
    clip: Optional[str] = typer.Option(None, help="CLIP model (default: the model set's)."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
):
    """Grid of global-direction edits: rows beta, columns alpha (like the paper's figures)."""
    import torch

    from . import stylespace as ss
    from .editors.global_directions import GlobalDirectionsConfig, GlobalDirectionsEditor
    from .errors import InputError
    from .factory import load_clip
    from .imaging import grid, save_gif, to_pil, upscale_for_viewing
    from .types import Prompt

    alpha_list, beta_list = _floats(alphas, "--alphas"), _floats(betas, "--betas")
    g = _generator(model, checkpoint, device)
    enc = load_clip(clip or (model if model and checkpoint is None else None), device=g.w_avg.device)
    st = _stats_for(g, stats, stats_samples)
    editor = GlobalDirectionsEditor(g, enc, config=GlobalDirectionsConfig(stats=st, relevance=relevance_file))
    dev = g.w_avg.device
    z = torch.randn(1, g.config.style_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    with torch.no_grad():
        styles = g.styles(g.broadcast(g.mapping(z, truncation)))
        tiles = []
        for beta in beta_list:
            try:
                ds, kept, _ = editor.direction(Prompt(prompt, neutral=neutral), beta)
            except InputError as e:
                typer.echo(f"beta {beta:g}: {e} (row left grey)", err=True)
                tiles += [torch.zeros(3, g.config.size, g.config.size)] * len(alpha_list)
                continue
            typer.echo(f"beta {beta:g}: {kept} channels", err=True)
            batch = [torch.cat([s + a * d.unsqueeze(0) for a in alpha_list]) for s, d in zip(styles, ds)]
            tiles += list(g.synthesis_from_styles(batch).cpu())
    out.parent.mkdir(parents=True, exist_ok=True)
    upscale_for_viewing(grid(tiles, ncols=len(alpha_list)), 256 * len(alpha_list)).save(out)
    typer.echo(f"wrote {out} (rows beta {beta_list}, columns alpha {alpha_list})")
    if gif:
        ds, _, _ = editor.direction(Prompt(prompt, neutral=neutral), beta_list[0])
        frames = []
        with torch.no_grad():
            for a in torch.linspace(min(alpha_list), max(alpha_list), 24).tolist():
                img = g.synthesis_from_styles(ss.apply_direction(styles, ds, a))
                frames.append(upscale_for_viewing(to_pil(img[0]), 256))
        path = save_gif(frames + frames[::-1], out.with_suffix(".gif"))
        typer.echo(f"wrote {path}")
