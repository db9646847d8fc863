"""`styleclip edit`: edit faces toward a text or a reference image. Parses options into an EditRequest and
hands it to the edit plan (`styleclip.pipelines.edit`), then prints; no decisions here."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer

from styleclip.cli.common import MODEL_HELP, _StepBar, friendly


def _tuned_help(engine: str, key: str, paper=None) -> str:
    """'300, toy-faces 50': an edit option's default, and the model sets' own where one is tuned (`paper`: ignored,
    the paper's value is the record's; `sweep` still passes it)."""
    from styleclip import models

    paper = getattr(models.PAPER.engine(engine), key)
    tuned = [f"{m.name} {getattr(m.presets.engine(engine), key):g}" for m in models.MODEL_SETS.values()
             if getattr(m.presets.engine(engine), key) != paper]
    return ", ".join([f"{paper:g}"] + tuned)


# CLI option name -> EditRequest field, where they differ
_FIELDS = {"relevance_file": "relevance", "init_from": "init", "compile_step": "compile"}
_CLI_ONLY = ("dry_run",)


def request_from_options(**options):
    """An EditRequest from `edit`'s keyword options (the per-engine subcommands reuse it)."""
    from styleclip.pipelines.edit import EditRequest

    return EditRequest(**{_FIELDS.get(k, k): v for k, v in options.items() if k not in _CLI_ONLY})


def run_request(request, *, dry_run: bool = False) -> None:
    """Resolve, then print the settings (dry run) or build, run and print the figures and what was written."""
    from styleclip.pipelines import edit as plan

    notice = lambda line: typer.echo(line, err=True)  # noqa: E731
    settings = plan.resolve(request, notice=notice, download=not dry_run)
    if dry_run:
        for line in settings.lines():
            typer.echo(line)
        return
    if request.image is not None:
        warning = plan.photo_warning(settings)
        if warning:
            typer.echo(warning, err=True)
    built = plan.build(settings, notice=notice)
    if request.image is not None:
        return _print_photo(built)
    bars: dict = {}

    def progress(desc, done, total, losses):
        bar = bars.get(desc)
        if bar is None:
            for old in bars.values():
                old.close()
            bar = bars[desc] = _StepBar(desc, total)
        bar(done, total, {k: f"{v:.4f}" for k, v in losses.items()} if losses else None)

    try:
        result = plan.run(built, progress=progress, on_edit=lambda e: typer.echo(e.line()))
    finally:
        for bar in bars.values():
            bar.close()
    note = plan.judge_note(built)
    if note:
        typer.echo(note)
    typer.echo(result.summary())


def _print_photo(built) -> None:
    from styleclip.pipelines import edit as plan

    r = built.settings.request
    image = Path(r.image)
    bar = _StepBar(f"inverting ({r.invert})", 1)

    def on_face(k, inv):
        for f in inv.tried:
            typer.echo(f"{image.name} face {k}: {f.line()}" + ("  <- used" if f is inv.fidelity else ""))

    try:
        done = plan.run_photo(built, progress=bar, on_face=on_face)
    finally:
        bar.close()
    for k, f in enumerate(done.result.faces):
        m = f.result.metrics
        line = f"{image.stem} face {k}: CLIP similarity {m['clip_before'][0]:.3f} -> {m['clip_after'][0]:.3f}"
        if "identity_similarity" in m:
            line += f", identity similarity {m['identity_similarity'][0]:.3f}"
        typer.echo(line)
    what = "the edited aligned crop" if r.crop_only else f"the whole photo ({len(done.result.faces)} face(s) edited)"
    typer.echo(f"wrote {done.paths[f'{image.stem}_edited.png']} ({what}) and {len(done.paths) - 1} more file(s) to "
               f"{built.settings.folder}/")


# ---- options: one table, grouped in help panels; `edit` shows them all, each engine subcommand its own -------
TARGET, SOURCE, PHOTO, STRENGTH = "Target", "Source", "Photo source (--image)", "Strength"
OPTIMIZE, GLOBAL, MAPPER, RUN = "Optimize", "Global directions", "Mapper", "Output, model and device"


def _o(default, *decls, panel: str, help: str, **kw):
    return typer.Option(default, *decls, rich_help_panel=panel, help=help, **kw)


def _strength(default: str):
    return _o(None, "--strength", "--alpha", panel=STRENGTH, help="Alpha / mapper scale / CLIP weight.",
              show_default=default)


def _options() -> dict:
    """name -> (type, typer.Option): every option of `edit`, with a one-line help and its default shown once."""
    return {
        "prompt": (Optional[str], _o(None, "--prompt", "-p", panel=TARGET, help="Target text, e.g. 'mohawk'.")),
        "target_image": (Optional[Path], _o(None, "--target-image", panel=TARGET,
                                            help="Reference image (its CLIP embedding).")),
        "engine": (Optional[str], _o(None, panel=TARGET, help="optimize | global | mapper | universal (or use the "
                                     "subcommands).", show_default="optimize; toy-faces universal")),
        "seed": (Optional[int], _o(None, panel=SOURCE, help="One seed (z -> truncation -> W+).", show_default="0")),
        "seeds": (Optional[str], _o(None, panel=SOURCE, help="Several seeds, e.g. '0-7' or '1,5,9'.")),
        "latent": (Optional[Path], _o(None, panel=SOURCE, help="A saved latent (.pt / .npy; W+ or S).")),
        "latents": (Optional[Path], _o(None, panel=SOURCE, help="A folder of latents.")),
        "image": (Optional[Path], _o(None, panel=SOURCE, help="A photo (faces edited, pasted back).")),
        "truncation": (float, _o(0.7, panel=SOURCE, help="Truncation psi for seeds.")),
        "face": (Optional[str], _o(None, "--face", "--face-index", panel=PHOTO,
                                   help="Which face (index) or 'all'.",
                                   show_default="the largest")),
        "invert": (str, _o("auto", panel=PHOTO, help="auto | e4e | projector | pti.")),
        "invert_steps": (Optional[int], _o(None, panel=PHOTO, help="Projector steps.",
                                           show_default="500, toy-faces 100")),
        "pti_steps": (Optional[int], _o(None, panel=PHOTO, help="PTI steps.",
                                        show_default="350, toy-faces 500")),
        "target_psnr": (float, _o(27.0, panel=PHOTO, help="auto: PSNR (dB) to reach.")),
        "target_identity": (float, _o(0.9, panel=PHOTO, help="auto: identity to reach.")),
        "crop_only": (bool, _o(False, "--crop-only", panel=PHOTO, help="Write the aligned crop, not the photo.")),
        "strength": (Optional[float], _strength("global " + _tuned_help("global", "strength") + "; else 1")),
        "auto_strength": (bool, _o(False, "--auto-strength", panel=STRENGTH, help="Smallest reaching the CLIP gain.")),
        "keep_identity": (Optional[bool], _o(None, "--keep-identity/--fixed-strength", panel=STRENGTH,
                                             help="Strongest keeping the person.",
                                             show_default="fixed; toy global: keep")),
        "steps": (Optional[int], _o(None, panel=OPTIMIZE, help="Adam steps.",
                                    show_default=_tuned_help("optimize", "steps"))),
        "lr": (Optional[float], _o(None, panel=OPTIMIZE, help="Learning rate.",
                                   show_default=_tuned_help("optimize", "lr"))),
        "l2_lambda": (Optional[float], _o(None, panel=OPTIMIZE, help="L2 to the source.",
                                          show_default=_tuned_help("optimize", "l2_lambda"))),
        "id_lambda": (Optional[float], _o(None, panel=OPTIMIZE, help="Identity loss weight.",
                                          show_default=_tuned_help("optimize", "id_lambda"))),
        "mode": (Optional[str], _o(None, panel=OPTIMIZE, help="edit | free_generation.",
                                   show_default="edit")),
        "space": (Optional[str], _o(None, panel=OPTIMIZE, help="wplus | styles (S space).",
                                    show_default="wplus")),
        "init_from": (Optional[str], _o(None, "--init", panel=OPTIMIZE, help="source | universal.",
                                        show_default="source, toy universal")),
        "clip_views": (Optional[int], _o(None, panel=OPTIMIZE, help="Shifted CLIP views.",
                                         show_default=_tuned_help("optimize", "clip_views"))),
        "bf16": (bool, _o(False, "--bf16", panel=OPTIMIZE, help="bfloat16 autocast (AVX512-BF16 CPUs, GPUs).")),
        "compile_step": (bool, _o(False, "--compile", panel=OPTIMIZE, help="torch.compile the step (long runs).")),
        "checkpoint_min_res": (Optional[int], _o(None, panel=OPTIMIZE, help="Recompute blocks >= this (less memory).",
                                                 show_default="off")),
        "gif": (bool, _o(False, "--gif", panel=OPTIMIZE, help="Also write an animation (GIF).")),
        "direction": (Optional[str], _o(None, panel=TARGET, help="text | image (CLIP image-side).",
                                        show_default="text")),
        "neutral": (Optional[str], _o(None, panel=GLOBAL, help="Text the direction starts from.",
                                      show_default="a face")),
        "beta": (Optional[float], _o(None, panel=GLOBAL, help="Edit channels with |relevance| >= beta.",
                                     show_default=_tuned_help("global", "beta"))),
        "relevance_file": (Optional[Path], _o(None, "--relevance", panel=GLOBAL, help="Relevance .npy (or fs3.npy).",
                                              show_default="shipped or cached")),
        "mapper": (Optional[str], _o(None, panel=MAPPER, help="A mapper file or name; 'universal': any prompt.",
                                     show_default="the one trained for --prompt")),
        "batch_size": (int, _o(4, panel=RUN, help="Sources edited together.")),
        "out": (Path, _o(Path("outputs"), panel=RUN, help="Runs write to OUT/<prompt>-<engine>[-N].")),
        "overwrite": (bool, _o(False, "--overwrite", panel=RUN, help="Reuse <prompt>-<engine> when it exists.")),
        "dry_run": (bool, _o(False, "--dry-run", panel=RUN, help="Print the resolved settings; load nothing.")),
        "model": (Optional[str], _o(None, panel=RUN, help=MODEL_HELP, show_default="ffhq, or toy-faces offline")),
        "checkpoint": (Optional[Path], _o(None, panel=RUN, help="Generator file (.pt, .pkl, .safetensors).")),
        "device": (str, _o("auto", panel=RUN, help="cpu, cuda, mps or auto.")),
    }


OPTIONS = _options()
_SHARED = ("prompt", "target_image", "seed", "seeds", "latent", "latents", "image", "truncation", "face", "invert",
           "invert_steps", "pti_steps", "target_psnr", "target_identity", "crop_only", "strength")
_RUN = ("batch_size", "out", "overwrite", "dry_run", "model", "checkpoint", "device")
_STRENGTH_PICKS = ("auto_strength", "keep_identity")
ENGINE_COMMANDS = {  # subcommand -> (its own options, one-line help)
    "optimize": (("steps", "lr", "l2_lambda", "id_lambda", "mode", "space", "init_from", "clip_views", "bf16",
                  "compile_step", "checkpoint_min_res", "gif", "direction"),
                 "Latent optimization: W+ (or S) optimized with CLIP loss, L2 to the source and identity loss."),
    "global": (_STRENGTH_PICKS + ("direction", "neutral", "beta", "relevance_file"),
               "Global directions: the text direction mapped into style space (alpha, beta)."),
    "mapper": (_STRENGTH_PICKS + ("mapper",), "A latent mapper trained for the prompt (or --mapper FILE)."),
    "universal": (_STRENGTH_PICKS + ("beta",), "The universal mapper: any prompt or reference image, no training."),
}

# an engine subcommand shows the strength default of its own engine
ENGINE_DEFAULTS = {
    "global": {"strength": (Optional[float], _strength(_tuned_help("global", "strength")))},
    **{e: {"strength": (Optional[float], _strength("1"))} for e in ("optimize", "mapper", "universal")},
}


def _command(names: tuple, *, engine: Optional[str], doc: str):
    """A Typer command taking exactly the options `names` (for an engine subcommand: `engine` is fixed)."""

    def command(**options):
        if engine is not None:
            options["engine"] = engine
        dry_run = options.pop("dry_run", False)
        run_request(request_from_options(**options), dry_run=dry_run)

    own = {**OPTIONS, **ENGINE_DEFAULTS.get(engine, {})}
    command.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY,
                                                                 default=own[n][1], annotation=own[n][0])
                                              for n in names])
    command.__annotations__ = {n: OPTIONS[n][0] for n in names}
    command.__doc__ = doc
    command.__name__ = engine or "edit"
    return friendly(command)


_ALL = tuple(OPTIONS)
_edit = _command(_ALL, engine=None, doc="")


def _callback(ctx: typer.Context, **options):
    if ctx.invoked_subcommand is None:  # plain `styleclip edit ...`: every option, --engine picks the engine
        _edit(**options)


_callback.__signature__ = inspect.Signature(
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    + list(inspect.signature(_edit).parameters.values()))
_callback.__annotations__ = {"ctx": typer.Context, **{n: OPTIONS[n][0] for n in _ALL}}

edit_app = typer.Typer(no_args_is_help=False, invoke_without_command=True, add_completion=False)
edit_app.callback(
    help="Edit faces toward a text or a reference image, into a new folder under --out.\n\n"
         "Writes the edit, a before/after pair and the latent. `styleclip edit ENGINE --help` shows one engine's "
         "options only "
         "(`styleclip edit --prompt ...` takes them all, with --engine).")(_callback)
for _name, (_own, _doc) in ENGINE_COMMANDS.items():
    edit_app.command(_name, help=_doc)(_command(_SHARED + _own + _RUN, engine=_name, doc=_doc))
