"""`styleclip train-mapper`: train a per-prompt or the universal latent mapper."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from styleclip.cli.common import (CHECKPOINT_HELP, DEVICE_HELP, MODEL_DEFAULT, MODEL_HELP, MODEL_PANEL, _check,
                                  _check_device, _check_text, _generator, _identity, _join_world, _model,
                                  _not_faces_notice, _say, friendly)


TRAINING_PANEL, LOSSES_PANEL, DATA_PANEL, RUN_PANEL = "Training", "Losses and sub-mappers", "Data", "Run folder"


@friendly
def train_mapper_command(
    prompt: Optional[str] = typer.Option(None, help="What the mapper edits toward, e.g. 'mohawk'."),
    universal: bool = typer.Option(False, "--universal", help="Train one text-conditioned mapper for any prompt "
                                   "instead."),
    init: str = typer.Option("auto", help="universal (fit to it first), none (random, the paper's), a file; "
                             "auto: universal if one is found."),
    distill_steps: int = typer.Option(1000, help="Steps of fitting to the universal mapper."),
    steps: int = typer.Option(50_000, help="Training steps (the paper: 50,000).", rich_help_panel=TRAINING_PANEL),
    batch_size: int = typer.Option(2, help="Latents per step and process (torchrun: x processes).",
                                   rich_help_panel=TRAINING_PANEL),
    lr: float = typer.Option(0.5, help="Learning rate of the effective batch.", rich_help_panel=TRAINING_PANEL),
    optimizer: str = typer.Option("ranger", help="ranger (RAdam + Lookahead, the paper's) or adam.",
                                  rich_help_panel=TRAINING_PANEL),
    seed: int = typer.Option(0, help="Seed of latents, initial weights, shuffling.",
                             rich_help_panel=TRAINING_PANEL),
    clip_lambda: float = typer.Option(1.0, help="Weight of the CLIP loss.", rich_help_panel=LOSSES_PANEL),
    l2_lambda: float = typer.Option(0.8, help="Weight of the latent L2 loss.", rich_help_panel=LOSSES_PANEL),
    id_lambda: float = typer.Option(0.1, help="Weight of the identity loss (if a net is found).",
                                    rich_help_panel=LOSSES_PANEL),
    no_coarse: bool = typer.Option(False, "--no-coarse", help="No coarse sub-mapper (W+ rows of 4-8 px).",
                                   rich_help_panel=LOSSES_PANEL),
    no_medium: bool = typer.Option(False, "--no-medium", help="No medium sub-mapper (16-32 px).",
                                   rich_help_panel=LOSSES_PANEL),
    no_fine: bool = typer.Option(False, "--no-fine", help="No fine sub-mapper (64 px and up; keeps colours).",
                                 rich_help_panel=LOSSES_PANEL),
    latents: Optional[Path] = typer.Option(None, help="Training latents (.pt [N,num_ws,512], e.g. e4e inversions).",
                                           show_default="sampled", rich_help_panel=DATA_PANEL),
    val_latents: Optional[Path] = typer.Option(None, help="Validation latents (.pt).",
                                               show_default="held out from --latents, or sampled",
                                               rich_help_panel=DATA_PANEL),
    num_latents: int = typer.Option(5000, help="Sampled training latents (without --latents).",
                                    rich_help_panel=DATA_PANEL),
    out: Optional[Path] = typer.Option(None, help="Run folder.", show_default="mappers/<prompt>",
                                       rich_help_panel=RUN_PANEL),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped.",
                                rich_help_panel=RUN_PANEL),
    minutes: Optional[float] = typer.Option(None, help="--universal: stop after this many minutes (then --resume).",
                                            rich_help_panel=RUN_PANEL),
    val_interval: int = typer.Option(2000, help="Validate (keep the best) every N steps.",
                                     rich_help_panel=RUN_PANEL),
    save_interval: int = typer.Option(2000, help="Write a resumable checkpoint every N steps.",
                                      rich_help_panel=RUN_PANEL),
    image_interval: int = typer.Option(2000, help="Write a source|edited image grid every N steps.",
                                       rich_help_panel=RUN_PANEL),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP, show_default=MODEL_DEFAULT,
                                        rich_help_panel=MODEL_PANEL),
    checkpoint: Optional[Path] = typer.Option(None, help=CHECKPOINT_HELP, rich_help_panel=MODEL_PANEL),
    device: str = typer.Option("auto", help=DEVICE_HELP, rich_help_panel=MODEL_PANEL),
):
    """Train a latent mapper for one prompt (StyleCLIP method 2), or one for any prompt.

    --universal trains the text-conditioned mapper on CLIP image-embedding differences of pairs of
    generated faces (no text needed). Under `torchrun --nproc-per-node N`: data parallel over N
    processes, effective batch N x --batch-size, --lr as given (docs/distributed.md)."""
    from tqdm import tqdm

    from styleclip import factory

    if universal:
        if prompt is not None:
            raise ValueError("--universal trains one mapper for every prompt: leave out --prompt")
        return _train_universal(steps if steps != 50_000 else None, batch_size if batch_size != 2 else None,
                                num_latents if num_latents != 5000 else None, id_lambda if id_lambda != 0.1 else None, save_interval, seed,
                                out, resume, minutes, model, checkpoint, device)
    if prompt is None:
        raise ValueError("say what the mapper edits toward: --prompt 'mohawk' (or --universal)")
    from styleclip.util.names import normalize_name
    from styleclip.errors import StyleClipError
    from styleclip.training.mapper import MapperTrainConfig, load_latents, train_mapper
    from styleclip.util import checks, outputs

    _check(num_latents=num_latents, steps=steps, batch_size=batch_size, lr=lr, clip_lambda=clip_lambda,
           l2_lambda=l2_lambda, id_lambda=id_lambda, val_interval=val_interval, save_interval=save_interval,
           image_interval=image_interval, seed=seed, distill_steps=distill_steps)
    _check_text(prompt=prompt)
    _check_device(device)
    out = out or Path("mappers") / outputs.short_name(normalize_name(prompt) or "mapper", 100)
    outputs.check_dir(out, "--out")
    world, device = _join_world(device)
    config = MapperTrainConfig(steps=steps, batch_size=batch_size * world.size, lr=lr, optimizer=optimizer,
                               clip_lambda=clip_lambda, l2_lambda=l2_lambda, id_lambda=id_lambda,
                               no_coarse=no_coarse, no_medium=no_medium, no_fine=no_fine, num_latents=num_latents,
                               val_interval=val_interval, save_interval=save_interval,
                               image_interval=image_interval, seed=seed, distill_steps=distill_steps)
    model = _model(model, checkpoint)
    g = _generator(model, checkpoint, device)
    if latents is None:
        checks.memory(num_latents * g.num_ws * g.config.style_dim * 4, f"--num-latents {num_latents}")
    dev = g.w_avg.device
    clip = factory.load_clip(factory.clip_for(g, model=model, checkpoint=checkpoint), device=dev)
    identity = None
    not_faces = _not_faces_notice(g, checkpoint) if id_lambda > 0 else None
    if not_faces:
        _say(not_faces)
    elif id_lambda > 0:
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
    teacher, start = factory.distill_teacher(init, g, clip, prompt, model=model)
    if not (resume and (out / "train_state.pt").is_file()):
        _say(f"start: {start}")
    notes = {"latents": str(latents) if latents is not None else f"sampled ({num_latents}, seed {seed})",
             "val_latents": str(val_latents) if val_latents is not None else None,
             "processes": world.size, "batch_per_process": batch_size, "init": start}
    if world.size > 1:
        _say(f"effective batch {config.batch_size} = {batch_size} per process x {world.size} processes; "
             f"lr {lr:g} as given")
    bar = tqdm(total=steps, unit="step", dynamic_ncols=True, disable=not world.is_main)

    def progress(done, total):
        bar.n = done
        bar.refresh()

    def log(step, record):
        bar.set_postfix({k: f"{record[k]:.4f}" for k in ("loss", "clip", "l2", "id", "val_loss") if k in record},
                        refresh=False)

    try:
        result = train_mapper(g, clip, prompt, identity=identity, config=config, latents=train, val_latents=val,
                              out_dir=out, resume=resume, progress=progress, log=log, notes=notes, teacher=teacher)
    finally:
        bar.close()
    if not world.is_main:
        return
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    typer.echo(f"wrote {result.best_path} (best validation loss {best}); run folder {out} "
               f"(step {result.step}; continue with --resume --out {out})")


def _train_universal(steps, batch_size, num_latents, id_lambda, save_interval, seed, out, resume, minutes, model,
                     checkpoint, device):
    from tqdm import tqdm

    from styleclip.training.universal_mapper import UniversalTrainConfig, train_universal_mapper

    defaults = UniversalTrainConfig()
    config = UniversalTrainConfig(steps=steps or defaults.steps, batch_size=batch_size or defaults.batch_size,
                                  num_latents=num_latents or defaults.num_latents,
                                  id_lambda=defaults.id_lambda if id_lambda is None else id_lambda,
                                  save_interval=min(save_interval, defaults.save_interval), seed=seed)
    model = _model(model, checkpoint)
    g = _generator(model, checkpoint, device)
    dev = g.w_avg.device
    from styleclip import factory

    clip = factory.load_clip(factory.clip_for(g, model=model, checkpoint=checkpoint), device=dev)  # as edit
    identity = _identity(model, dev) if config.id_lambda > 0 else None
    out = out or Path("mappers") / "universal"
    bar = tqdm(total=config.steps, unit="step", dynamic_ncols=True)

    def progress(done, total):
        bar.n = done
        bar.refresh()

    def log(step, record):
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items()}, refresh=False)

    try:
        trainer = train_universal_mapper(g, clip, identity, config=config, out_dir=out, resume=resume,
                                         progress=progress, log=log,
                                         max_seconds=minutes * 60 if minutes is not None else None)
    finally:
        bar.close()
    typer.echo(f"wrote {out / 'universal.safetensors'} (step {trainer.step}); continue with --universal --resume "
               f"--out {out}; use it with --engine mapper --mapper {out / 'universal.safetensors'}")
