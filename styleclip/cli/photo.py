"""`styleclip faces` and `styleclip invert`: find, align and invert the faces of a photo."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from styleclip.cli.common import (CHECKPOINT_HELP, DEVICE_HELP, MODEL_DEFAULT, MODEL_HELP, MODEL_PANEL, OUTPUT_PANEL,
                                  _StepBar, _check, _check_device, _generator, _identity, _model, _photo_warning,
                                  friendly)


@friendly
def faces(
    photo: Path = typer.Argument(..., help="A photo (JPEG, PNG, ...)."),
    out: Optional[Path] = typer.Option(None, help="Write the FFHQ-aligned crops here (face_<index>.png)."),
    size: int = typer.Option(256, help="Side of the aligned crops in pixels."),
):
    """List the faces of a photo, largest first; optionally save aligned crops.

    One line per face: index (for --face-index), box and detection probability."""
    from styleclip.util import outputs
    from styleclip.errors import InputError
    from styleclip.photo.faces import aligned_faces

    _check(size=size)
    if out is not None:
        outputs.check_dir(out, "--out")
    found, crops = aligned_faces(photo, size=size)
    if not found:
        raise InputError(f"no face found in {photo}")
    lines = []
    with outputs.Outputs() as files:
        for face, crop in zip(found, crops):
            x1, y1, x2, y2 = face.box
            line = f"{face.index}  box=({x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f})  probability={face.probability:.3f}"
            if out is not None:
                line += f"  -> {files.image(crop.image, out / f'face_{face.index}.png')}"
            lines.append(line)
    for line in lines:
        typer.echo(line)


@friendly
def invert(
    photo: Path = typer.Argument(..., help="A photo with a face."),
    out: Path = typer.Option(Path("inversion"), help="Output folder (latent.pt, aligned.png, reconstruction.png, "
                             "side_by_side.png).", rich_help_panel=OUTPUT_PANEL),
    steps: int = typer.Option(500, help="Optimization steps (ignored with an encoder)."),
    face_index: Optional[int] = typer.Option(None, help="Which face (see `styleclip faces`).",
                                             show_default="the largest"),
    encoder: Optional[Path] = typer.Option(None, help="e4e checkpoint: one forward pass instead of optimization.",
                                           show_default="e4e_ffhq_encode.pt when found"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Invert again even if this photo was inverted before."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP, show_default=MODEL_DEFAULT,
                                        rich_help_panel=MODEL_PANEL),
    checkpoint: Optional[Path] = typer.Option(None, help=CHECKPOINT_HELP, rich_help_panel=MODEL_PANEL),
    device: str = typer.Option("auto", help=DEVICE_HELP, rich_help_panel=MODEL_PANEL),
):
    """Align a face of a photo and invert it into W+.

    With an e4e encoder (--encoder, or found in the weights folders) one forward pass, else
    optimization of the latent; the result is cached per photo and generator."""
    from styleclip.util import outputs
    from styleclip.photo.invert import InversionConfig, default_encoder, save_inversion

    _check(steps=steps, face_index=face_index)
    _check_device(device)
    outputs.check_dir(out, "--out")
    model = _model(model, checkpoint)
    g = _generator(model, checkpoint, device)
    _photo_warning(model)
    enc = default_encoder(g, encoder, device=g.w_avg.device)
    method = "e4e encoder" if enc is not None else f"optimization, {steps} steps"
    if enc is None and g.w_avg.device.type == "cpu" and g.config.size >= 512:
        typer.echo("note: optimizing a 1024-px generator on a CPU takes tens of seconds per step; "
                   "use --encoder e4e_ffhq_encode.pt or a GPU", err=True)
    from styleclip.photo.faces import align_photo
    from styleclip.photo.invert import cached_inversion_path, invert_aligned

    config = InversionConfig(steps=steps)
    aligned = align_photo(photo, size=g.config.size, face_index=face_index).image
    cached = not no_cache and cached_inversion_path(aligned, g, config=config, encoder=enc).is_file()
    typer.echo(f"{photo}: " + ("found in the inversion cache (an earlier run; --no-cache to invert again)"
                               if cached else f"inverting ({method})"), err=True)
    bar = _StepBar("inverting", 1 if enc is not None else steps) if not cached else None
    try:
        result = invert_aligned(aligned, g, config=config, encoder=enc, progress=bar, use_cache=not no_cache)
    finally:
        if bar is not None:
            bar.close()
    paths = save_inversion(out, result.w_plus, aligned, result.reconstruction)
    from styleclip.photo.fidelity import measure
    from styleclip.util.imaging import from_pil

    recon = result.reconstruction
    fid = measure("e4e" if enc is not None else "projector", recon, from_pil(aligned, g.config.size).to(recon.device),
                  _identity(model if checkpoint is None else None, g.w_avg.device), 0.0)
    typer.echo(f"reconstruction: {fid.figures()}")
    how = "from the cache" if result.cached else method
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())} (W+ {list(result.w_plus.shape)}; {how})")
