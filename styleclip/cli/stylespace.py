"""`styleclip relevance`, `prepare` and `sweep`: style-space files and alpha/beta grids."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from styleclip.cli.common import (CHECKPOINT_HELP, CLIP_DEFAULT, CLIP_HELP, DEVICE_HELP, MODEL_DEFAULT, MODEL_HELP,
                                  MODEL_PANEL, OUTPUT_PANEL, _check, _check_device, _check_text, _clip_name, _floats,
                                  _generator, _identity, _join_world, _model, _say, _stats_for, friendly)


STATS_PANEL = "Relevance and style statistics"


@friendly
def relevance(
    out: Path = typer.Option(..., help="Output .npy (layer/channel rows, like the official fs3.npy)."),
    images: int = typer.Option(100, help="Sampled images per channel (the official protocol's)."),
    fast: bool = typer.Option(False, help="Linearised estimator (fast), not the exact protocol.",
                              show_default=False),
    all_layers: bool = typer.Option(False, "--all-layers", help="Every conv layer, not only those up to 128 px."),
    batch_size: Optional[int] = typer.Option(None, help="Image pairs per forward (exact protocol).",
                                             show_default="by size"),
    stats: Optional[Path] = typer.Option(None, help="Style statistics file.", show_default="cached or computed",
                                         rich_help_panel=STATS_PANEL),
    stats_samples: int = typer.Option(100_000, help="Samples for the style statistics when computed.",
                                      rich_help_panel=STATS_PANEL),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP, show_default=MODEL_DEFAULT,
                                        rich_help_panel=MODEL_PANEL),
    checkpoint: Optional[Path] = typer.Option(None, help=CHECKPOINT_HELP, rich_help_panel=MODEL_PANEL),
    clip: Optional[str] = typer.Option(None, help=CLIP_HELP, show_default=CLIP_DEFAULT, rich_help_panel=MODEL_PANEL),
    device: str = typer.Option("auto", help=DEVICE_HELP, rich_help_panel=MODEL_PANEL),
):
    """Compute channel relevance (fs3) for global directions; resumes an interrupted run.

    Under `torchrun --nproc-per-node N` the channels are shared out among N processes
    (docs/distributed.md)."""
    from styleclip.util import checks, outputs
    from styleclip.factory import load_clip

    _check(images=images, stats_samples=stats_samples, batch_size=batch_size)
    _check_device(device)
    outputs.check_file(out, "--out", suffixes=(".npy",))
    _, device = _join_world(device)
    model = _model(model, checkpoint)
    g = _generator(model, checkpoint, device)
    checks.memory(images * sum(layer.channels for layer in g.layers) * 4 * 2, f"--images {images}")
    enc = load_clip(_clip_name(clip, model, checkpoint, g), device=g.w_avg.device)
    rel = _relevance_run(g, enc, out, images=images, fast=fast, all_layers=all_layers,
                         stats=_stats_for(g, stats, stats_samples), batch_size=batch_size)
    _say(f"wrote {out} ({rel.fs3.shape[0]} x {rel.fs3.shape[1]}) and {out}.json")


def _relevance_run(g, enc, out: Path, *, images: int, fast: bool, all_layers: bool, stats, batch_size=None):
    """Relevance of g (sharded under torchrun, resumable through OUT.partial/), saved by rank 0 to `out` and,
    with the default settings, to the cache entry where the global engine looks for it."""
    from styleclip import stylespace as ss
    from styleclip.store.stylespace_files import relevance_cache_path
    from styleclip.util.distributed import world
    from styleclip.util.progress import EtaPrinter

    layers = ss.relevance_layers(g, all_layers=all_layers)
    n_ch = sum(g.layers[k].channels for k in layers)
    _say(f"{'estimating' if fast else 'computing'} relevance of {n_ch} channels over {images} images")
    eta = EtaPrinter("relevance" + (f" (rank 0's share, of {world().size})" if world().size > 1 else ""), _say)
    ckpt = Path(str(out) + ".partial")
    if fast:
        rel = ss.estimate_relevance(g, enc, stats, n_images=images, layers=layers, checkpoint=ckpt, progress=eta)
    else:
        rel = ss.compute_relevance(g, enc, stats, n_images=images, layers=layers, batch_size=batch_size,
                                   checkpoint=ckpt, progress=eta)
    if world().is_main:
        rel.save(out)  # atomic, refuses NaN
        if images == ss.RELEVANCE_IMAGES and not all_layers:  # where the global engine looks for it
            rel.save(relevance_cache_path(g, enc, "fast" if fast else "exact"))
    return rel


@friendly
def prepare(
    out: Path = typer.Option(..., help="Folder for the statistics, relevance and prepared.json."),
    checkpoint: Optional[Path] = typer.Option(None, help="Your generator checkpoint (.pt, .pkl, .safetensors)."),
    model: Optional[str] = typer.Option(None, help="Or a model set: ffhq, toy-faces or debug."),
    clip: Optional[str] = typer.Option(None, help="CLIP model, kept for this generator's later runs.",
                                       show_default="the model set's; ViT-B/32 for a checkpoint"),
    fast: bool = typer.Option(False, help="Linearised relevance estimator (fast), not the exact one.",
                              show_default=False, rich_help_panel=STATS_PANEL),
    images: int = typer.Option(100, help="Sampled images per channel (the official protocol's).",
                               rich_help_panel=STATS_PANEL),
    stats_samples: int = typer.Option(100_000, help="Samples for the style statistics.", rich_help_panel=STATS_PANEL),
    faces: Optional[bool] = typer.Option(None, "--faces/--not-faces", help="Whether it makes faces (identity loss).",
                                         show_default="detected in 8 samples"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
):
    """Bring your own generator: style statistics and channel relevance, once.

    Recorded with the generator's fingerprint, so that later runs with `--checkpoint` find them.
    Sharded under `torchrun --nproc-per-node N` (docs/distributed.md)."""
    from styleclip.util import outputs
    from styleclip import stylespace as ss
    from styleclip.store.prepared import register_prepared
    from styleclip.util.distributed import world as current_world
    from styleclip.util.fingerprint import clip_fingerprint, generator_fingerprint
    from styleclip.util.progress import EtaPrinter

    _check(images=images, stats_samples=stats_samples)
    _check_device(device)
    outputs.check_dir(out, "--out")
    if (checkpoint is None) == (model is None):
        raise ValueError("give --checkpoint (your generator) or --model")
    _, device = _join_world(device)
    g = _generator(model, checkpoint, device)
    _say(f"preparing {checkpoint or model} ({g.config.size} px, fingerprint {generator_fingerprint(g)}) into {out}")
    if current_world().is_main:
        out.mkdir(parents=True, exist_ok=True)
    stats = ss.compute_stats(g, n=stats_samples, checkpoint=out / "stats.partial",
                             progress=EtaPrinter("style statistics", _say))
    if current_world().is_main:
        stats.save(out / "stats.safetensors")
    from styleclip.factory import load_clip

    clip_name = clip or model
    enc = load_clip(clip_name, device=g.w_avg.device)
    rel = _relevance_run(g, enc, out / "fs3.npy", images=images, fast=fast, all_layers=False, stats=stats)
    if not current_world().is_main:
        return
    if faces is None:
        from styleclip.photo.faces import generator_makes_faces

        faces, hits = generator_makes_faces(g)
        reason = f"a face detector found faces in {hits} of 8 samples"
    else:
        reason = "--faces" if faces else "--not-faces"
    record = {"checkpoint": str(checkpoint.resolve()) if checkpoint else None, "model": model,
              "clip": clip_name, "clip_fingerprint": clip_fingerprint(enc), "faces": faces,
              "faces_reason": reason, "stats": "stats.safetensors", "stats_n": stats_samples,
              "stats_truncation": ss.STATS_TRUNCATION, "stats_seed": ss.STATS_SEED, "relevance": "fs3.npy",
              "relevance_method": "fast" if fast else "exact", "relevance_images": images,
              "processes": current_world().size}
    path = register_prepared(g, out, record)
    typer.echo(f"wrote {out / 'stats.safetensors'}, {out / 'fs3.npy'} ({rel.fs3.shape[0]} channels) and {path}")
    if not faces:
        typer.echo(f"not a face generator ({reason}): the identity loss will be off for it; "
                   "pass --faces to say otherwise", err=True)


GRID_PANEL, FACE_PANEL, FILES_PANEL = "Grid", "Face", "Style-space files"


@friendly
def sweep(
    prompt: str = typer.Option(..., help="Target text, e.g. 'a smiling face'."),
    neutral: str = typer.Option("a face", help="Neutral text."),
    alphas: Optional[str] = typer.Option(None, help="Comma-separated strengths (columns).",
                                         show_default="-a,0,a with a the model set's strength",
                                         rich_help_panel=GRID_PANEL),
    betas: Optional[str] = typer.Option(None, help="Comma-separated thresholds (rows).",
                                        show_default="2/3, 1, 4/3 x the model set's beta", rich_help_panel=GRID_PANEL),
    seed: int = typer.Option(0, help="Seed of the sampled face.", rich_help_panel=FACE_PANEL),
    truncation: float = typer.Option(0.7, help="Truncation psi of the sampled face.", rich_help_panel=FACE_PANEL),
    out: Path = typer.Option(Path("sweep.png"), help="Output grid image.", rich_help_panel=OUTPUT_PANEL),
    gif: bool = typer.Option(False, help="Also an alpha animation (OUT with .gif) at the first beta.",
                             show_default=False, rich_help_panel=OUTPUT_PANEL),
    relevance_file: Optional[Path] = typer.Option(None, "--relevance", help="Channel relevance fs3 .npy (ours or "
                                                  "official).", rich_help_panel=FILES_PANEL),
    stats: Optional[Path] = typer.Option(None, help="Style statistics file.", show_default="cached or computed",
                                         rich_help_panel=FILES_PANEL),
    stats_samples: int = typer.Option(100_000, help="Samples for the style statistics when computed.",
                                      rich_help_panel=FILES_PANEL),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP, show_default=MODEL_DEFAULT,
                                        rich_help_panel=MODEL_PANEL),
    checkpoint: Optional[Path] = typer.Option(None, help=CHECKPOINT_HELP, rich_help_panel=MODEL_PANEL),
    clip: Optional[str] = typer.Option(None, help=CLIP_HELP, show_default=CLIP_DEFAULT, rich_help_panel=MODEL_PANEL),
    device: str = typer.Option("auto", help=DEVICE_HELP, rich_help_panel=MODEL_PANEL),
):
    """Grid of global-direction edits of one face: rows beta, columns alpha.

    Like the paper's figures; --gif adds an animation over alpha."""
    import torch

    from styleclip import stylespace as ss
    from styleclip.errors import InputError
    from styleclip.factory import create_editor, load_clip
    from styleclip.util import checks, outputs
    from styleclip.util.imaging import grid, save_gif, to_pil, upscale_for_viewing
    from styleclip.types import Prompt

    from styleclip.factory import edit_defaults, global_direction_options
    from styleclip.util.imaging import label_grid

    _check(seed=seed, truncation=truncation, stats_samples=stats_samples)
    _check_text(prompt=prompt, neutral=neutral)
    _check_device(device)
    outputs.check_file(out, "--out", suffixes=outputs.image_suffixes())
    if gif:
        outputs.check_file(out.with_suffix(".gif"), "--gif")
    model = _model(model, checkpoint)
    tuned = edit_defaults(model if checkpoint is None else None, "global")
    a, b = tuned.get("strength", 4.1), tuned.get("beta", 0.15)
    alpha_list = _floats(alphas, "--alphas", "alpha") if alphas is not None else [-a, 0.0, a]
    beta_list = _floats(betas, "--betas", "beta") if betas is not None else \
        [round(b * 2 / 3, 3), b, round(b * 4 / 3, 3)]
    g = _generator(model, checkpoint, device)
    st = _stats_for(g, stats, stats_samples) if stats is not None else None  # a given file fails early
    enc = load_clip(_clip_name(clip, model, checkpoint, g), device=g.w_avg.device)
    st = st or _stats_for(g, stats, stats_samples)
    checks.memory(len(alpha_list) * len(beta_list) * 3 * g.config.size ** 2 * 4 * 2,
                  f"a {len(beta_list)}x{len(alpha_list)} grid of {g.config.size}-px images", hint="fewer values")
    tuned_for = model if checkpoint is None else None
    identity = _identity(model, g.w_avg.device) if "identity_damping" in tuned and tuned_for else None
    editor = create_editor("global", g, enc, identity, stats=st, relevance=relevance_file,
                           **global_direction_options(tuned_for, identity))
    dev = g.w_avg.device
    z = torch.randn(1, g.config.style_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    with torch.no_grad():
        styles = g.styles(g.broadcast(g.mapping(z, truncation)))
        tiles, failed = [], []
        for beta in beta_list:
            try:
                ds, kept, _ = editor.direction(Prompt(prompt, neutral=neutral), beta)
            except InputError as e:
                typer.echo(f"beta {beta:g}: {e} (row left grey)", err=True)
                tiles += [torch.zeros(3, g.config.size, g.config.size)] * len(alpha_list)
                failed.append(str(e))
                continue
            typer.echo(f"beta {beta:g}: {kept} channels", err=True)
            batch = [torch.cat([s + a * d.unsqueeze(0) for a in alpha_list]) for s, d in zip(styles, ds)]
            tiles += list(g.synthesis_from_styles(batch).cpu())
    if len(failed) == len(beta_list):
        raise InputError(f"no beta gave a direction ({failed[0]})")
    checks.finite_tensors(tiles, "the sweep images")
    with outputs.Outputs() as files:
        image = upscale_for_viewing(grid(tiles, ncols=len(alpha_list)), 128 * len(alpha_list))
        files.image(label_grid(image, [f"alpha {x:g}" for x in alpha_list], [f"beta {x:g}" for x in beta_list]), out)
        if gif:
            ds, _, _ = editor.direction(Prompt(prompt, neutral=neutral), beta_list[0])
            frames = []
            with torch.no_grad():
                for a in torch.linspace(min(alpha_list), max(alpha_list), 24).tolist():
                    img = g.synthesis_from_styles(ss.apply_direction(styles, ds, a))
                    checks.finite_tensors(img, "the sweep animation")
                    frames.append(upscale_for_viewing(to_pil(img[0]), 256))
            gif_path = files.write(out.with_suffix(".gif"), lambda tmp: save_gif(frames + frames[::-1], tmp))
    typer.echo(f"wrote {out} (rows beta {', '.join(f'{x:g}' for x in beta_list)}; columns alpha "
               f"{', '.join(f'{x:g}' for x in alpha_list)})")
    if gif:
        typer.echo(f"wrote {gif_path}")
