"""`styleclip generate` and `styleclip convert`: faces from seeds, checkpoints to safetensors."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from styleclip.cli.common import (CHECKPOINT_HELP, DEVICE_HELP, MODEL_DEFAULT, MODEL_HELP, MODEL_PANEL,
                                  OUTPUT_PANEL, _check, _check_device, _generator, _model, friendly)


@friendly
def generate(
    seed: int = typer.Option(0, help="Random seed of z."),
    truncation: float = typer.Option(0.7, help="Truncation psi toward the mean latent (1 = none)."),
    out: Path = typer.Option(Path("face.png"), help="Output image (PNG/JPG).", rich_help_panel=OUTPUT_PANEL),
    save_latent: Optional[Path] = typer.Option(None, help="Also save the W+ latent (.pt) here.",
                                               rich_help_panel=OUTPUT_PANEL),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP, show_default=MODEL_DEFAULT,
                                        rich_help_panel=MODEL_PANEL),
    checkpoint: Optional[Path] = typer.Option(None, help=CHECKPOINT_HELP, rich_help_panel=MODEL_PANEL),
    device: str = typer.Option("auto", help=DEVICE_HELP, rich_help_panel=MODEL_PANEL),
):
    """Generate a face from a seed."""
    import torch

    from styleclip.util import checks, outputs
    from styleclip.util.imaging import to_pil

    _check(seed=seed, truncation=truncation)
    _check_device(device)
    outputs.check_file(out, "--out", suffixes=outputs.image_suffixes())
    if save_latent is not None:
        outputs.check_file(save_latent, "--save-latent")
    outputs.distinct(out, save_latent, checkpoint)
    model = _model(model, checkpoint)
    g = _generator(model, checkpoint, device)
    dev = g.w_avg.device
    z = torch.randn(1, g.config.style_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    with torch.no_grad():
        w_plus = g.broadcast(g.mapping(z, truncation))
        img = g.synthesis(w_plus)
    checks.finite_tensors([w_plus, img], "the generated face")
    with outputs.Outputs() as files:
        files.image(to_pil(img[0]), out)
        if save_latent is not None:
            files.torch(w_plus.cpu(), save_latent)
    typer.echo(f"wrote {out} ({g.config.size}x{g.config.size}, seed {seed}, truncation {truncation})")


@friendly
def convert(
    src: Path = typer.Argument(..., help="rosinality .pt, NVIDIA .pkl, our .safetensors or a model set's name."),
    dst: Path = typer.Argument(..., help="Output .safetensors."),
):
    """Convert a generator checkpoint to styleclip's safetensors form.

    The file is read without running any code from it. A model set's name (e.g. toy-faces) writes its
    generator as a checkpoint file."""
    from styleclip.util import outputs
    from styleclip.store.readers import build_generator, read_generator, save_generator
    from styleclip.store.registry import MODEL_SETS

    outputs.check_file(dst, "DST", suffixes=(".safetensors",))
    outputs.distinct(src, dst)
    if not src.exists() and str(src) in MODEL_SETS:
        from styleclip.factory import load_generator

        g = load_generator(str(src))
        config = g.config
    else:
        config, state = read_generator(src)
        g = build_generator(config, state, source=str(src))
    save_generator(g, dst)
    typer.echo(f"wrote {dst} (size {config.size}, style_dim {config.style_dim}, n_mlp {config.n_mlp})")
