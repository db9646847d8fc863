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


@friendly
def edit(
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Target text, e.g. 'mohawk'."),
    target_image: Optional[Path] = typer.Option(None, "--target-image", help="Target: a reference image whose "
                                                "CLIP embedding is the target (e.g. a face with the hair you "
                                                "want); instead of or besides --prompt."),
    engine: Optional[str] = typer.Option(None, help="optimize | mapper | global (mapper: --mapper universal for "
                                         "any prompt) [default: optimize; toy-faces: the universal mapper]"),
    seed: Optional[int] = typer.Option(None, help="Source: one seed (z -> truncation -> W+).", show_default="0"),
    seeds: Optional[str] = typer.Option(None, help="Source: several seeds, e.g. '0-7' or '1,5,9'."),
    latent: Optional[Path] = typer.Option(None, help="Source: a saved latent (.pt / .npy): W+, or S space as "
                                          "written by global or --space styles edits."),
    latents: Optional[Path] = typer.Option(None, help="Source: a folder of latents."),
    image: Optional[Path] = typer.Option(None, help="Source: a photo (the face is aligned and inverted; cached)."),
    face: Optional[str] = typer.Option(None, "--face", "--face-index", help="--image: which face (an index, "
                                       "see `styleclip faces`), or 'all' to edit every face.",
                                       show_default="the largest"),
    invert: str = typer.Option("auto", help="--image: auto (the cheapest of e4e / projector / pti reaching "
                               "--target-psnr and --target-identity), e4e, projector or pti."),
    invert_steps: Optional[int] = typer.Option(None, help="--image: projector steps.",
                                               show_default="500, toy-faces 100"),
    pti_steps: Optional[int] = typer.Option(None, help="--image: pivotal-tuning steps.",
                                            show_default="350, toy-faces 500, debug 30"),
    target_psnr: float = typer.Option(27.0, help="--invert auto: reconstruction PSNR (dB) to reach."),
    target_identity: float = typer.Option(0.9, help="--invert auto: identity similarity of the reconstruction to "
                                          "reach (where the model set has an identity net)."),
    crop_only: bool = typer.Option(False, "--crop-only", help="--image: write the edited aligned crop as "
                                   "<name>_edited.png instead of the whole photo."),
    truncation: float = typer.Option(0.7, help="Truncation psi for seeds."),
    steps: Optional[int] = typer.Option(None, help="optimize: Adam steps.",
                                        show_default=_tuned_help("optimize", "steps")),
    lr: Optional[float] = typer.Option(None, help="optimize: learning rate.",
                                       show_default=_tuned_help("optimize", "lr")),
    l2_lambda: Optional[float] = typer.Option(None, help="optimize: weight of the L2 distance to the source latent.",
                                              show_default=_tuned_help("optimize", "l2_lambda")),
    id_lambda: Optional[float] = typer.Option(None, help="optimize: weight of the identity loss (needs an "
                                              "identity net).", show_default=_tuned_help("optimize", "id_lambda")),
    mode: Optional[str] = typer.Option(None, help="optimize: 'edit' or 'free_generation' (from the mean latent).",
                                       show_default="edit"),
    space: Optional[str] = typer.Option(None, help="optimize: 'wplus' or 'styles' (S space, non-toRGB).",
                                        show_default="wplus"),
    bf16: bool = typer.Option(False, help="optimize: bfloat16 autocast (faster on CPUs with AVX512-BF16 and on GPUs)."),
    compile_step: bool = typer.Option(False, "--compile", help="optimize: torch.compile the step (on CUDA with "
                                      "CUDA graphs); the first step compiles for a minute or more, so it pays "
                                      "on long runs (needs a C++ compiler on the CPU, Triton on CUDA)."),
    checkpoint_min_res: Optional[int] = typer.Option(None, help="optimize: recompute the blocks of this "
                                                     "resolution and above in the backward pass (less memory, "
                                                     "e.g. 512 at 1024 px; for the least, also set "
                                                     "STYLECLIP_KEEP_FREED_MEMORY=0).", show_default="off"),
    clip_views: Optional[int] = typer.Option(None, help="optimize: CLIP scores the mean of this many randomly "
                                             "shifted copies of the edit (against changes only CLIP sees); 0: "
                                             "the image as it is, as the paper.",
                                             show_default=_tuned_help("optimize", "clip_views")),
    init_from: Optional[str] = typer.Option(None, "--init", help="optimize: where the latent starts: 'source' "
                                            "(the paper) or 'universal' (the universal mapper's edit toward the "
                                            "prompt, then refined; needs a universal mapper for the generator).",
                                            show_default="source, toy-faces universal"),
    strength: Optional[float] = typer.Option(None, "--strength", "--alpha", help="Edit strength: alpha for "
                                             "global, residual scale for mapper (1), CLIP-term weight for "
                                             "optimize (1).", show_default="global " + _tuned_help(
                                                 "global", "strength") + "; mapper and optimize 1"),
    neutral: Optional[str] = typer.Option(None, help="global: the neutral text the direction starts from.",
                                          show_default="a face"),
    beta: Optional[float] = typer.Option(None, help="global: disentanglement threshold (channels with "
                                         "|relevance| < beta are left alone); 0 picks it automatically. "
                                         "Universal mapper: its change is kept only on channels with "
                                         "|relevance| >= beta (default: toy-faces 0.1, else off); 0: off.",
                                         show_default=_tuned_help("global", "beta")),
    relevance_file: Optional[Path] = typer.Option(None, "--relevance", help="global: channel relevance .npy "
                                                  "(ours or the official fs3.npy).",
                                                  show_default="the shipped or cached one"),
    mapper: Optional[str] = typer.Option(None, help="mapper: a mapper file or name ('universal': the "
                                         "text-conditioned mapper, any prompt or image).",
                                         show_default="the mapper trained for --prompt on this generator"),
    auto_strength: bool = typer.Option(False, "--auto-strength", help="global / mapper: pick the strength per "
                                       "face (the smallest multiple of --strength reaching the CLIP gain while "
                                       "the identity net still says same person); reported per face."),
    keep_identity: Optional[bool] = typer.Option(None, "--keep-identity/--fixed-strength", help="global / mapper: "
                                                 "per face, the strongest of 0.25, 0.5, 0.75 and 1 x --strength "
                                                 "that the identity net still reads as the same person (an identity "
                                                 "budget); reported per face. --fixed-strength: --strength on every "
                                                 "face.", show_default="fixed; global on toy-faces: keep identity "
                                                 "(alpha 5, beta 0.1)"),
    direction: Optional[str] = typer.Option(None, help="optimize / global: 'text' (the paper's CLIP text "
                                            "target) or 'image' (the prompt's image-side CLIP direction, from "
                                            "ranking generated faces) [default: text; or the model's]."),
    batch_size: int = typer.Option(4, help="Sources edited together."),
    out: Path = typer.Option(Path("outputs"), help="Output folder: each run writes into its own folder in it, "
                             "<prompt>-<engine>, numbered -2, -3, ... when that exists."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into <prompt>-<engine> even when it exists "
                                   "(its files of the same names are replaced)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved settings (each with where it came "
                                 "from: default, model set or option) and exit without loading models."),
    gif: bool = typer.Option(False, help="optimize: also write an animation of the optimization."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP, show_default="ffhq, or toy-faces offline"),
    checkpoint: Optional[Path] = typer.Option(None, help="Generator checkpoint (.pt, .pkl, .safetensors)."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
):
    """Edit faces toward a text prompt; writes the edit, a before/after pair and the edited latent into a new
    folder under --out."""
    options = {k: v for k, v in locals().items() if k in _EDIT_PARAMS}
    run_request(request_from_options(**options), dry_run=dry_run)


_EDIT_PARAMS = tuple(inspect.signature(edit).parameters)
