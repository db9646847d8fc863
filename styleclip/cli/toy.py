"""`styleclip toy ...`: train and evaluate the embedded toy-faces models."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from styleclip.cli.common import _check, friendly


toy_app = typer.Typer(no_args_is_help=True, help="The embedded toy-faces models: train and evaluate.")


RECIPE_PANEL, RUN_PANEL = "Recipe", "Checkpoints, evaluation and threads"


@toy_app.command("train")
@friendly
def toy_train(
    model: str = typer.Argument(..., help="clip, classifier, identity or generator."),
    steps: Optional[int] = typer.Option(None, help="Stop at this total step count."),
    minutes: Optional[float] = typer.Option(None, help="Stop after this many minutes of this run."),
    out: Optional[Path] = typer.Option(None, help="Run folder (checkpoint, log, exported weights).",
                                       show_default="toy-runs/<model>"),
    resume: bool = typer.Option(False, "--resume", help="Continue from <out>/checkpoint.pt."),
    init_from: Optional[Path] = typer.Option(None, help="Start from the exported weights in this folder, fresh "
                                                        "optimizer."),
    start_step: int = typer.Option(0, help="With --init-from: the step those weights were exported at."),
    seed: int = typer.Option(0, help="Seed of the initial weights and of the batch stream.",
                             rich_help_panel=RECIPE_PANEL),
    batch_size: Optional[int] = typer.Option(None, help="Batch size.",
                                             show_default="the recipe's; the run's with --resume",
                                             rich_help_panel=RECIPE_PANEL),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate.",
                                       show_default="the recipe's; the run's with --resume",
                                       rich_help_panel=RECIPE_PANEL),
    anneal: bool = typer.Option(False, "--anneal", help="Decay the learning rate to zero (half cosine) by --steps.",
                                rich_help_panel=RECIPE_PANEL),
    finetune: bool = typer.Option(False, "--finetune", help="generator's last phase (with --init-from): the "
                                  "synthesis on the mapping's outputs.", rich_help_panel=RECIPE_PANEL),
    partial_captions: Optional[float] = typer.Option(
        None, help="clip: fraction of captions naming only some attributes.",
        show_default="0; the run's with --resume", rich_help_panel=RECIPE_PANEL),
    tiny: bool = typer.Option(False, "--tiny", hidden=True, help="Tiny networks (tests)."),
    ckpt_every: int = typer.Option(100, help="Checkpoint every N steps.", rich_help_panel=RUN_PANEL),
    eval_every: int = typer.Option(0, help="Evaluate every N steps (0: only at the end).", rich_help_panel=RUN_PANEL),
    eval_size: int = typer.Option(512, help="Held-out evaluation images / pairs.", rich_help_panel=RUN_PANEL),
    threads: int = typer.Option(2, help="torch CPU threads.", rich_help_panel=RUN_PANEL),
):
    """Train a toy-faces model (resumable; deterministic given the seed).

    --finetune, the generator's last phase, trains the synthesis on the mapping's outputs, truncated
    as the CLI samples them. --partial-captions (clip): captions that name only some attributes
    ('a bald face', 'a face'), each image a positive of every caption it matches."""
    import torch

    from styleclip.toy.training.train import CHECKPOINT, load_checkpoint, make_task, run_training

    from styleclip.util import outputs

    _check(steps=steps, minutes=minutes, start_step=start_step, seed=seed, batch_size=batch_size, lr=lr,
           ckpt_every=ckpt_every, eval_every=eval_every, threads=threads, eval_size=eval_size)
    if steps is None and minutes is None:
        raise ValueError("give --steps or --minutes (or both)")
    if finetune and model != "generator":
        raise ValueError("--finetune is a phase of the generator recipe only")
    torch.set_num_threads(threads)
    out = out or Path("toy-runs") / model
    outputs.check_dir(out, "--out")
    if partial_captions is not None:
        if model != "clip":
            raise ValueError("--partial-captions is a setting of the clip recipe only")
        _check(partial_captions=partial_captions)
    if resume and (lr is None or batch_size is None or partial_captions is None):  # the run's settings
        meta = load_checkpoint(out / CHECKPOINT)["meta"]
        lr = meta.get("lr") if lr is None else lr
        batch_size = meta.get("batch_size") if batch_size is None else batch_size
        partial_captions = meta.get("partial") if partial_captions is None else partial_captions
    task = make_task(model, seed=seed, batch_size=batch_size, lr=lr, tiny=tiny or None, eval_size=eval_size,
                     finetune=finetune or None, partial=partial_captions if model == "clip" else None)
    run_training(task, out, steps=steps, minutes=minutes, resume=resume,
                 ckpt_every=ckpt_every, eval_every=eval_every, init_from=init_from, start_step=start_step,
                 anneal=anneal, log=typer.echo)


@toy_app.command("eval")
@friendly
def toy_eval(
    model: str = typer.Argument(..., help="clip, classifier, identity or generator."),
    weights: Optional[Path] = typer.Option(None, help="Folder with <model>.safetensors and <model>.json.",
                                           show_default="the packaged ones"),
    n: int = typer.Option(512, help="Held-out evaluation images / pairs."),
):
    """Evaluation figures of exported toy weights, as JSON."""
    import json

    from styleclip.toy.assets import ASSETS
    from styleclip.toy.training.train import evaluate_exported

    _check(n=n)
    typer.echo(json.dumps(evaluate_exported(model, weights or ASSETS, n=n), indent=1))


@toy_app.command("stylespace")
@friendly
def toy_stylespace(
    images: int = typer.Option(100, help="Sampled images per channel for the relevance."),
    threads: int = typer.Option(2, help="torch CPU threads."),
):
    """Recompute the toy model's shipped style-space files.

    Its style statistics, exact channel relevance and the channels' identity cost, written into
    the package (styleclip/assets/stylespace/), where the global-directions engine finds them."""
    import torch

    from styleclip.stylespace import identity_cost as ic
    from styleclip import stylespace as ss
    from styleclip.store import stylespace_files as files
    from styleclip.util.progress import EtaPrinter
    from styleclip.factory import load_clip, load_generator, load_identity

    _check(images=images, threads=threads)
    torch.set_num_threads(threads)
    g, enc = load_generator("toy-faces"), load_clip("toy-faces")
    say = lambda m: typer.echo(m, err=True)  # noqa: E731
    stats = ss.compute_stats(g, progress=EtaPrinter("style statistics", say))
    stats_path = stats.save(files.SHIPPED_DIR / files.stats_cache_path(g).name)
    settings = {} if images == ss.RELEVANCE_IMAGES else {"n_images": images}
    out = files.SHIPPED_DIR / files.relevance_cache_path(g, enc, "exact", **settings).name
    rel = ss.compute_relevance(g, enc, stats, n_images=images, checkpoint=Path(str(out) + ".partial"),
                               progress=EtaPrinter("relevance", say))
    rel.save(out)
    identity = load_identity("toy-faces")
    cost = ic.compute_identity_cost(g, identity, stats, progress=EtaPrinter("identity cost", say))
    cost_path = cost.save(files.SHIPPED_DIR / files.identity_cost_cache_path(g, identity).name)
    typer.echo(f"wrote {stats_path}, {out} ({rel.fs3.shape[0]} x {rel.fs3.shape[1]}) and {cost_path}")
