"""The `styleclip` command line: parse options, call the library, save outputs. No algorithms here."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Text-driven editing of StyleGAN2 images (StyleCLIP).")

MODEL_HELP = ("Model set: 'ffhq' (real FFHQ weights, downloaded), 'toy-faces' (embedded cartoon faces, offline; the "
              "default when FFHQ cannot be had), 'debug' (tiny random).")
# Square brackets in help texts are eaten by rich markup: defaults that depend on something go in show_default.


def friendly(fn):
    """User mistakes, bad files and failed computations end with one `error:` line on stderr and exit code 1,
    never a traceback (STYLECLIP_DEBUG=1 shows the traceback of an unexpected error)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import os

        import click

        from .errors import StyleClipError

        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except (StyleClipError, ValueError, OSError) as e:
            message = " ".join(str(e).split()) or type(e).__name__
        except MemoryError:
            message = "out of memory; use smaller sizes or batches"
        except RecursionError:
            message = "input nested too deeply to process"
        except Exception as e:  # a bug, but still one line: the contract holds for every input
            if os.environ.get("STYLECLIP_DEBUG"):
                raise
            message = (f"unexpected {type(e).__name__}: {' '.join(str(e).split())[:300]} (set STYLECLIP_DEBUG=1 "
                       "for the traceback and please report it)")
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)

    return wrapper


# Bounds of the numeric options (name -> lo, hi): checked before anything is loaded. Integers have int bounds.
LIMITS = {
    "seed": (0, 2 ** 63 - 1), "steps": (1, 1_000_000), "distill_steps": (0, 1_000_000), "invert_steps": (1, 100_000), "batch_size": (1, 256),
    "face_index": (0, 10_000), "checkpoint_min_res": (4, 8192), "size": (16, 2048), "images": (1, 100_000),
    "stats_samples": (2, 1_000_000), "num_latents": (1, 1_000_000), "val_interval": (1, 10_000_000),
    "save_interval": (1, 10_000_000), "image_interval": (1, 10_000_000), "ckpt_every": (1, 10_000_000),
    "eval_every": (0, 10_000_000), "threads": (1, 1024), "eval_size": (1, 10_000), "n": (1, 10_000),
    "partial_captions": (0.0, 1.0), "start_step": (0, 100_000_000), "port": (1, 65_535),
    "truncation": (-2.0, 2.0), "strength": (-100.0, 100.0), "alpha": (-100.0, 100.0), "beta": (0.0, 1.0),
    "lr": (0.0, 10.0), "l2_lambda": (0.0, 1e4), "id_lambda": (0.0, 1e4), "clip_lambda": (0.0, 1e4),
    "minutes": (0.0, 1e6), "clip_views": (0, 64),
}
OPEN_LO = {"lr", "minutes"}  # must be above their lower bound


def _check(**values) -> None:
    """Each given option (None = not given) within LIMITS, finite, of the right type; one InputError line."""
    from . import checks

    for name, value in values.items():
        if value is None:
            continue
        lo, hi = LIMITS[name]
        checks.number(value, "--" + name.replace("_", "-"), lo=lo, hi=hi, integer=isinstance(lo, int),
                      open_lo=name in OPEN_LO)


def _check_device(device: str) -> None:
    from .factory import resolve_device

    resolve_device(device)


def _check_text(**texts) -> None:
    from .errors import InputError
    from .types import MAX_PROMPT_CHARS

    for name, text in texts.items():
        if text is not None and len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"--{name} is {len(text)} characters long; at most {MAX_PROMPT_CHARS}")


def _model(model: Optional[str], checkpoint: Optional[Path]) -> Optional[str]:
    """The model set named, or with neither --model nor --checkpoint: FFHQ if available, else toy-faces."""
    if model is not None or checkpoint is not None:
        return model
    from .factory import default_model

    return default_model(notice=lambda line: typer.echo(line, err=True))


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

    from . import checks, outputs
    from .imaging import to_pil

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


@app.command()
@friendly
def convert(
    src: Path = typer.Argument(..., help="rosinality .pt, NVIDIA .pkl or our .safetensors (or a model set's "
                               "name, e.g. toy-faces: its generator as a checkpoint file)"),
    dst: Path = typer.Argument(..., help="output .safetensors"),
):
    """Convert a generator checkpoint to styleclip's safetensors form (read without running its code)."""
    from . import outputs
    from .convert import build_generator, read_generator, save_generator
    from .pretrained import MODEL_SETS

    outputs.check_file(dst, "DST", suffixes=(".safetensors",))
    outputs.distinct(src, dst)
    if not src.exists() and str(src) in MODEL_SETS:
        from .factory import load_generator

        g = load_generator(str(src))
        config = g.config
    else:
        config, state = read_generator(src)
        g = build_generator(config, state, source=str(src))
    save_generator(g, dst)
    typer.echo(f"wrote {dst} (size {config.size}, style_dim {config.style_dim}, n_mlp {config.n_mlp})")


def _check_sources(seed, seeds, latent, latents, image, face, invert_steps) -> None:
    given = [name for name, v in (("--seed", seed), ("--seeds", seeds), ("--latent", latent),
                                  ("--latents", latents), ("--image", image)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give only one source, not {' and '.join(given)}: --seed, --seeds, --latent, --latents "
                         "or --image")
    if image is None and (face is not None or invert_steps is not None):
        raise ValueError("--face-index and --invert-steps are options of an --image source")


def _sources(generator, seed, seeds, latent, latents, truncation):
    """The Latent to edit (photos take another path: `_edit_photo`)."""
    from .sources import latents_from_dir, latents_from_seeds, load_latent_file, parse_seeds

    if latent is not None:
        return load_latent_file(latent, generator)
    if latents is not None:
        return latents_from_dir(latents, generator)
    return latents_from_seeds(generator, parse_seeds(seeds) if seeds is not None else [seed or 0], truncation)


def _photo_warning(model: Optional[str]) -> None:
    from .factory import TOY

    if model in ("toy-faces", TOY, "debug"):
        typer.echo(f"warning: --model {model} is not a photo model ({'64-px cartoon faces' if model != 'debug' else 'random weights'}): "
                   "a real photo cannot be reconstructed by it, so the inversion and any edit of it will not "
                   "look like the person; use --model ffhq for photos", err=True)


class _StepBar:
    """A stderr progress bar for `progress(done, total)` callbacks whose total is known up front (no 0/1 start,
    and an ETA from the steps actually taken, not from the set-up before the first)."""

    def __init__(self, label: str, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=max(1, total), desc=label, unit="step", dynamic_ncols=True, file=sys.stderr)

    def __call__(self, done: int, total: int, postfix: Optional[dict] = None):
        if total != self.bar.total:
            self.bar.total = total
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self):
        self.bar.close()


def _invert_options(model, g, identity, *, steps, pti_steps, target_psnr, target_identity, use_cache=True):
    """invert_face's keyword arguments for this model set (its tuned projector / PTI settings)."""
    from . import factory, pti
    from .fidelity import FidelityTarget
    from .inversion import InversionConfig, default_encoder

    proj = {**factory.edit_defaults(model, "projector"), **({"steps": steps} if steps is not None else {})}
    tune = {**factory.edit_defaults(model, "pti"), **({"steps": pti_steps} if pti_steps is not None else {})}
    return dict(encoder=default_encoder(g, None, device=g.w_avg.device), identity=identity,
                projector=InversionConfig(**proj), pti=pti.PTIConfig(**tune),
                target=FidelityTarget(psnr=target_psnr, identity=target_identity), use_cache=use_cache)


def _edit_photo(image: Path, g, editor, text, *, face, invert, invert_options, out: Path, crop_only: bool,
                model=None):
    """Invert and edit the chosen faces of a photo, paste the edits back, save everything with the figures."""
    from .faces import load_image
    from .photo_edit import edit_photo, find_faces, parse_face, save_photo_edit

    _photo_warning(model)
    photo = load_image(image)
    aligned = find_faces(photo, size=g.config.size, face=parse_face(face), source=str(image))
    bar = _StepBar(f"inverting ({invert})", 1)

    def on_face(k, inv):
        for f in inv.tried:
            typer.echo(f"{image.name} face {k}: {f.line()}" + ("  <- used" if f is inv.fidelity else ""))

    try:
        result = edit_photo(photo, aligned, g, editor, text, invert=invert, invert_options=invert_options,
                            on_face=on_face, progress=bar)
    finally:
        bar.close()
    paths = save_photo_edit(out, image.stem, result, crop_only=crop_only)
    for k, f in enumerate(result.faces):
        m = f.result.metrics
        line = f"{image.stem} face {k}: CLIP similarity {m['clip_before'][0]:.3f} -> {m['clip_after'][0]:.3f}"
        if "identity_similarity" in m:
            line += f", identity similarity {m['identity_similarity'][0]:.3f}"
        typer.echo(line)
    what = "the edited aligned crop" if crop_only else f"the whole photo ({len(result.faces)} face(s) edited)"
    typer.echo(f"wrote {paths[f'{image.stem}_edited.png']} ({what}) and {len(paths) - 1} more file(s) to {out}/")


# Options that only one engine uses (the CLI refuses them with another engine rather than ignore them).
ENGINE_OPTIONS = {
    "optimize": ("--steps", "--lr", "--l2-lambda", "--id-lambda", "--mode", "--space", "--bf16",
                 "--checkpoint-min-res", "--gif", "--clip-views", "--init", "--compile"),
    "global": ("--neutral", "--beta", "--relevance"),
    "mapper": ("--mapper",),
    "universal": ("--beta",),  # the universal mapper's disentanglement threshold
}


def _check_engine_options(engine: str, given: dict) -> None:
    """`given`: option name -> whether the user set it. Options of another engine are an error."""
    own = set(ENGINE_OPTIONS.get(engine, ()))
    for other, names in ENGINE_OPTIONS.items():
        stray = [n for n in names if given.get(n) and n not in own]
        if other != engine and engine in ENGINE_OPTIONS and stray:
            raise ValueError(f"{', '.join(stray)} {'is an option' if len(stray) == 1 else 'are options'} of "
                             f"--engine {other}; --engine {engine} does not use {'it' if len(stray) == 1 else 'them'}")


def _tuned_help(engine: str, key: str, paper) -> str:
    """'300, toy-faces 50': the default of an edit option, and the model sets' own where one is tuned."""
    from .factory import MODEL_EDIT_DEFAULTS

    tuned = [f"{model} {v[engine][key]:g}" for model, v in MODEL_EDIT_DEFAULTS.items()
             if v.get(engine, {}).get(key, paper) != paper]
    return ", ".join([f"{paper:g}"] + tuned)


@app.command()
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
                                        show_default=_tuned_help("optimize", "steps", 300)),
    lr: Optional[float] = typer.Option(None, help="optimize: learning rate.",
                                       show_default=_tuned_help("optimize", "lr", 0.1)),
    l2_lambda: Optional[float] = typer.Option(None, help="optimize: weight of the L2 distance to the source latent.",
                                              show_default=_tuned_help("optimize", "l2_lambda", 0.008)),
    id_lambda: Optional[float] = typer.Option(None, help="optimize: weight of the identity loss (needs an "
                                              "identity net).", show_default=_tuned_help("optimize", "id_lambda",
                                                                                         0.005)),
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
                                             show_default=_tuned_help("optimize", "clip_views", 0)),
    init_from: Optional[str] = typer.Option(None, "--init", help="optimize: where the latent starts: 'source' "
                                            "(the paper) or 'universal' (the universal mapper's edit toward the "
                                            "prompt, then refined; needs a universal mapper for the generator).",
                                            show_default="source, toy-faces universal"),
    strength: Optional[float] = typer.Option(None, "--strength", "--alpha", help="Edit strength: alpha for "
                                             "global, residual scale for mapper (1), CLIP-term weight for "
                                             "optimize (1).", show_default="global " + _tuned_help(
                                                 "global", "strength", 4.1) + "; mapper and optimize 1"),
    neutral: Optional[str] = typer.Option(None, help="global: the neutral text the direction starts from.",
                                          show_default="a face"),
    beta: Optional[float] = typer.Option(None, help="global: disentanglement threshold (channels with "
                                         "|relevance| < beta are left alone); 0 picks it automatically. "
                                         "Universal mapper: its change is kept only on channels with "
                                         "|relevance| >= beta (default: toy-faces 0.1, else off); 0: off.",
                                         show_default=_tuned_help("global", "beta", 0.15)),
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
    out: Path = typer.Option(Path("outputs"), help="Output folder."),
    gif: bool = typer.Option(False, help="optimize: also write an animation of the optimization."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP, show_default="ffhq, or toy-faces offline"),
    checkpoint: Optional[Path] = typer.Option(None, help="Generator checkpoint (.pt, .pkl, .safetensors)."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
):
    """Edit faces toward a text prompt; writes the edit, a before/after pair and the edited latent."""
    from . import checks, factory, outputs
    from .imaging import grid, save_gif, to_pil, upscale_for_viewing
    from .sources import save_latent
    from .types import Prompt

    if prompt is None and target_image is None:
        raise ValueError("say what to edit toward: --prompt 'mohawk' or --target-image face.png")
    _check(seed=seed, invert_steps=invert_steps, truncation=truncation, steps=steps, lr=lr, clip_views=clip_views,
           l2_lambda=l2_lambda, id_lambda=id_lambda, checkpoint_min_res=checkpoint_min_res, strength=strength,
           beta=beta, batch_size=batch_size)
    _check_text(prompt=prompt, neutral=neutral)
    _check_device(device)
    if seeds is not None:
        from .sources import parse_seeds

        parse_seeds(seeds)  # a bad --seeds fails before anything loads
    outputs.check_dir(out, "--out")
    if checkpoint_min_res is not None:  # less memory asked for: freed memory goes back to the system (runtime.py)
        from .runtime import keep_freed_memory

        keep_freed_memory(False)
    given = {
        "--steps": steps is not None, "--lr": lr is not None, "--l2-lambda": l2_lambda is not None,
        "--id-lambda": id_lambda is not None, "--mode": mode is not None, "--space": space is not None,
        "--bf16": bf16, "--compile": compile_step, "--checkpoint-min-res": checkpoint_min_res is not None, "--gif": gif,
        "--clip-views": clip_views is not None, "--init": init_from is not None,
        "--neutral": neutral is not None, "--beta": beta is not None, "--relevance": relevance_file is not None,
        "--mapper": mapper is not None}
    model = _model(model, checkpoint)
    if engine is None:  # the model set's default engine; optimize (the usual default) when its options are given
        engine = "optimize" if any(given[n] for n in ENGINE_OPTIONS["optimize"]) else \
            factory.default_engine(model if checkpoint is None else None)
    if engine == "universal":  # the same as --engine mapper --mapper universal
        engine, mapper = "mapper", mapper or "universal"
    if engine == "mapper" and mapper is None and target_image is not None:
        mapper = "universal"  # a per-prompt mapper knows one text; an image target needs the universal one
    universal = engine == "mapper" and factory.is_universal_mapper(mapper)
    _check_engine_options("universal" if universal else engine,
                          {**given, "--mapper": mapper is not None and not universal})
    beta_given = beta is not None
    tuned_for = model if checkpoint is None else None
    if keep_identity is None:  # the model set's choice (toy-faces global: an identity budget), unless --auto-strength
        keep_identity = not auto_strength and not universal and bool(
            factory.edit_defaults(tuned_for, engine).get("keep_identity"))
    tuned = factory.edit_defaults(tuned_for, "universal" if universal else engine, keep_identity=keep_identity)
    steps, lr, l2_lambda, id_lambda, beta, strength = (
        tuned.get(k, d) if v is None else v for k, v, d in (
            ("steps", steps, 300), ("lr", lr, 0.1), ("l2_lambda", l2_lambda, 0.008), ("id_lambda", id_lambda, 0.005),
            ("beta", beta, 0.15), ("strength", strength, {"global": 4.1}.get(engine, 1.0))))
    direction = direction or tuned.get("direction", "text")
    if direction not in ("text", "image"):
        raise ValueError(f"--direction must be 'text' or 'image', got {direction!r}")
    g = _generator(model, checkpoint, device)
    ref = None
    if target_image is not None:
        from .image_directions import load_reference_image

        ref = load_reference_image(target_image, g.config.size)
    text = Prompt(prompt or "", neutral=neutral or "a face", strength=strength, image=ref)
    _check_sources(seed, seeds, latent, latents, image, face, invert_steps)
    dev = g.w_avg.device
    clip = factory.load_clip(_clip_name(None, model, checkpoint, g), device=dev)
    not_faces = _not_faces_notice(g, checkpoint) if id_lambda > 0 and engine == "optimize" else None
    if not_faces:
        typer.echo(not_faces, err=True)
    # the identity net: the loss of optimize, the budget of auto strength and the universal mapper's figure; on
    # the small built-in models also a figure for every engine
    wants_identity = (engine == "optimize" and id_lambda > 0 and not not_faces) or auto_strength or keep_identity or \
        universal or \
        (checkpoint is None and model in (factory.TOY, "debug"))
    identity = _identity(model, dev) if wants_identity or image is not None else None  # photos: fidelity figures
    options = {}
    auto = {}
    if auto_strength and keep_identity:
        raise ValueError("--auto-strength (reach the CLIP gain) and --keep-identity (the strongest edit that keeps "
                         "the person) pick the strength in two ways: choose one")
    if auto_strength or keep_identity:
        flag = "--auto-strength" if auto_strength else "--keep-identity"
        if engine == "optimize":
            raise ValueError(f"{flag} is for --engine global or mapper (optimize has --id-lambda)")
        if keep_identity and identity is None:
            raise ValueError("--keep-identity needs an identity net, and this model set has none")
        auto = dict(auto=True, auto_strength=factory.auto_strength_config(
            model, identity, target="identity" if keep_identity else "gain"))
    if engine == "optimize":
        options = dict(steps=steps, lr=lr, l2_lambda=l2_lambda, id_lambda=id_lambda, mode=mode or "edit",
                       space=space or "wplus", bf16=bf16, compile=compile_step,
                       frame_every=max(1, steps // 40) if gif else 0,
                       checkpoint_min_res=checkpoint_min_res, direction=direction,
                       clip_views=tuned.get("clip_views", 0) if clip_views is None else clip_views,
                       init=init_from or tuned.get("init", "source"), init_min_change=tuned.get("init_min_change", 0.0))
    elif engine == "global":
        options = dict(beta=beta or None, relevance=relevance_file, direction=direction, **auto,
                       **factory.global_direction_options(tuned_for, identity))
    elif universal:  # --beta 0 (or a model set without a tuned beta): the mapper's whole W+ edit
        ubeta = beta if beta_given else tuned.get("beta")
        options = dict(mapper=mapper, beta=ubeta or None, min_change=tuned.get("min_change", 0.0), **auto)
    elif engine == "mapper":
        if target_image is not None:
            raise ValueError("a per-prompt mapper edits toward the text it was trained for; use --mapper "
                             "universal for a --target-image")
        options = dict(mapper=mapper or prompt, **auto)
    editor = factory.create_editor(engine, g, clip, identity if wants_identity else None, **options)
    if compile_step:
        typer.echo("--compile: the first step compiles the optimization step (a minute or two; less when an earlier "
                   "run left torch's compile cache), then the steps run faster", err=True)
    if image is not None:
        opts = _invert_options(model if checkpoint is None else None, g, identity, steps=invert_steps,
                               pti_steps=pti_steps, target_psnr=target_psnr, target_identity=target_identity)
        _edit_photo(image, g, editor, text, face=face, invert=invert, invert_options=opts, out=out,
                    crop_only=crop_only, model=model)
        return
    judge = _toy_judge(model if checkpoint is None else None, dev)
    source = _sources(g, seed, seeds, latent, latents, truncation)
    n = source.batch_size
    written, spaces = [], set()
    staged = outputs.Outputs()  # every output is renamed into place only when all edits succeeded
    with staged:
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            part = source.rows(lo, hi)
            desc = f"{engine} {part.labels[0]}" + (f"..{part.labels[-1]}" if hi - lo > 1 else "")
            bar = _StepBar(desc, steps if engine == "optimize" else 1)
            try:
                def progress(done, total, bar=bar):
                    losses = getattr(editor, "last_losses", None)
                    bar(done, total, {k: f"{v:.4f}" for k, v in losses.items()} if losses else None)

                result = editor.edit(part, text, progress=progress)
            finally:
                bar.close()
            latents = [result.latent] if hasattr(result.latent, "shape") else list(result.latent)
            checks.finite_tensors([result.image, *latents], f"the {engine} edit of {desc}")
            unrelated = judge(result.source_image, result.image, text) if judge and result.source_image is not None \
                else None
            for j, label in enumerate(part.labels):
                name = outputs.short_name(label, 150)
                files = [out / f"{name}_edited.png", out / f"{name}_before_after.png", out / f"{name}_latent.pt"]
                staged.image(to_pil(result.image[j]), files[0])
                staged.image(upscale_for_viewing(grid([result.source_image[j], result.image[j]])), files[1])
                lat = result.latent[j:j + 1] if hasattr(result.latent, "shape") else [s[j:j + 1] for s in result.latent]
                spaces.add("S" if isinstance(lat, list) else "W+")
                staged.write(files[2], lambda tmp, lat=lat: save_latent(lat, tmp))
                if gif and result.frames:
                    frames = [upscale_for_viewing(to_pil(f[j])) for f in result.frames]
                    files.append(staged.write(out / f"{name}.gif", lambda tmp, frames=frames: save_gif(frames, tmp)))
                written.append(files)
                m = result.metrics
                line = f"{label}: CLIP similarity {m['clip_before'][j]:.3f} -> {m['clip_after'][j]:.3f}"
                if "identity_similarity" in m:
                    line += f", identity similarity {m['identity_similarity'][j]:.3f}"
                if unrelated is not None:
                    kept, total, changed = unrelated[j]
                    line += f", unrelated attributes kept {kept}/{total}" + (f" ({'; '.join(changed)})" if changed else "")
                if "channels_kept" in m:
                    a = m["alpha"][j] if isinstance(m["alpha"], list) else m["alpha"]
                    line += f" ({m['channels_kept']} channels, beta {m['beta']:.2f}, alpha {a:g})"
                elif "strength" in m:
                    line += f" (strength {m['strength'][j]:g})"
                if "gain_reached" in m:
                    line += ", CLIP gain " + ("reached" if m["gain_reached"][j] else "not reached")
                typer.echo(line)
    if judge is not None:
        from .toy.evaluate import IDENTITY_COMPARES, IDENTITY_IGNORES

        typer.echo(f"(toy-faces: identity similarity compares {IDENTITY_COMPARES} and ignores {IDENTITY_IGNORES} "
                   "by design; unrelated attributes are read by the evaluation classifier)")
    first = source.labels[0]
    kinds = ", ".join(p.name.replace(first, "<label>" if n > 1 else first, 1) for p in written[0])
    which = f" for <label> = {', '.join(source.labels[:4])}{', ...' if n > 4 else ''}" if n > 1 else ""
    typer.echo(f"wrote {n} edit(s) to {out}/: {kinds}{which} (latent in {' and '.join(sorted(spaces))} space)")


def _toy_judge(model: Optional[str], device):
    """On toy-faces: `judge(src_img, edit_img, prompt)` -> per edit (unrelated kept, compared, changes), read by
    the evaluation classifier; None for other models."""
    from .factory import TOY

    if model not in ("toy-faces", TOY):
        return None
    from .toy.evaluate import unrelated_changes
    from .toy.train import load_toy_classifier

    classifier = load_toy_classifier().to(device)
    return lambda src, img, prompt: unrelated_changes(
        classifier, src, img, prompt.target if prompt.image is None else None, prompt.image)


def _identity(model: Optional[str], device):
    """The identity net of the model set, or None (with a notice) when it is not available."""
    from . import factory

    loader = getattr(factory, "load_identity", None)
    if loader is None:
        return None
    from .errors import WeightsMissingError

    try:
        return loader(model, device=device)
    except WeightsMissingError as e:
        typer.echo(f"notice: identity loss off ({e})", err=True)
        return None


@app.command()
@friendly
def faces(
    photo: Path = typer.Argument(..., help="A photo (JPEG, PNG, ...)."),
    out: Optional[Path] = typer.Option(None, help="Write the FFHQ-aligned crops here (face_<index>.png)."),
    size: int = typer.Option(256, help="Side of the aligned crops in pixels."),
):
    """List the faces of a photo (index, box, probability), largest first; optionally save aligned crops."""
    from . import outputs
    from .errors import InputError
    from .faces import aligned_faces

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
    from . import outputs
    from .inversion import InversionConfig, default_encoder, save_inversion

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
    from .faces import align_photo
    from .inversion import cached_inversion_path, invert_aligned

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
    from .fidelity import measure
    from .imaging import from_pil

    recon = result.reconstruction
    fid = measure("e4e" if enc is not None else "projector", recon, from_pil(aligned, g.config.size).to(recon.device),
                  _identity(model if checkpoint is None else None, g.w_avg.device), 0.0)
    typer.echo(f"reconstruction: {fid.figures()}")
    how = "from the cache" if result.cached else method
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())} (W+ {list(result.w_plus.shape)}; {how})")


# ---- styleclip weights ... ------------------------------------------------------------------------------------
weights_app = typer.Typer(no_args_is_help=True, help="Known pretrained weights: list, download, verify, locate.")
app.add_typer(weights_app, name="weights")


@weights_app.command("list")
@friendly
def weights_list(
    kind: Optional[str] = typer.Option(None, help="Only this kind (generator, clip, identity, mapper, ...)."),
):
    """Every known weight: name, size, licence, and where it is if present."""
    from . import pretrained

    rows = [(s.name, pretrained.human_size(s), s.kind,
             ("NC " if s.non_commercial else "") + s.licence.split(";")[0].split(" (")[0],
             str(pretrained.find(s.name) or ("unsupported" if s.extra.get("unsupported") else "-")))
            for s in pretrained.REGISTRY.values() if kind is None or s.kind == kind]
    if not rows:
        raise ValueError(f"no weights of kind {kind!r}")
    header = ("name", "size", "kind", "licence (NC = non-commercial)", "present")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for r in [header] + rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])


@weights_app.command("download")
@friendly
def weights_download(
    names: list[str] = typer.Argument(..., help="Weight names (see `weights list`) or a model set (ffhq)."),
    dest: Optional[Path] = typer.Option(None, help="Folder (default: $STYLECLIP_WEIGHTS_DIR or the user cache)."),
    quiet: bool = typer.Option(False, help="No progress bar."),
):
    """Download weights (resumable, sha256-checked where a hash is published)."""
    from . import outputs, pretrained
    from .errors import WeightsMissingError
    from .factory import weight_problem

    if dest is not None:
        outputs.check_dir(dest, "--dest")
    for name in pretrained.expand_names(names):
        existing = pretrained.find(name) if dest is None else dest / pretrained.get_spec(name).filename
        if existing is not None and existing.is_file():
            problem = weight_problem(name, existing)
            if problem is None:
                typer.echo(f"{name}: already present at {existing}")
                continue
            if pretrained.offline():
                raise WeightsMissingError(f"{name}: {existing} is corrupt ({problem}) and "
                                          f"{pretrained.OFFLINE_REASON}, so it is not downloaded again; delete "
                                          "it, or download it when online")
            typer.echo(f"{name}: {existing} is corrupt ({problem}); downloading it again", err=True)
            path = pretrained.download(name, existing.parent, progress=not quiet, replace=True)
        else:
            path = pretrained.download(name, dest, progress=not quiet)
        typer.echo(f"{name}: {path}")


@weights_app.command("verify")
@friendly
def weights_verify(names: Optional[list[str]] = typer.Argument(None, help="Only these weights.")):
    """Check the sha256 (and size) of every present weight file; exit 1 on any mismatch."""
    from . import pretrained

    from .factory import weight_problem

    rows = pretrained.verify(pretrained.expand_names(names) if names else None, validate=weight_problem)
    if not rows:
        typer.echo("no known weight files present (looked in: "
                   + ", ".join(str(d) for d in pretrained.search_dirs()) + ")")
    for name, path, status in rows:
        typer.echo(f"{name}  {status}  {path}")
    bad = [name for name, _, status in rows if "mismatch" in status.lower() or status.startswith("CORRUPT")]
    if bad:
        typer.echo(f"error: {len(bad)} file(s) are corrupt or do not match their published checksum or size: "
                   f"{', '.join(bad)}", err=True)
        raise typer.Exit(1)


@weights_app.command("path")
@friendly
def weights_path(name: str = typer.Argument(..., help="Weight name (see `weights list`) or a model set (ffhq).")):
    """Print where weight NAME is, or for a model set where each of its weights is (exit 1 if one is absent)."""
    from . import pretrained

    if name in pretrained.MODEL_SETS and name not in pretrained.REGISTRY:
        ms = pretrained.MODEL_SETS[name]
        weights = [w for w in (ms.generator, ms.clip, ms.identity) if w in pretrained.REGISTRY]
        if not weights:
            typer.echo(f"{name}: built in (no weight files; {ms.description})")
            return
        missing = []
        for w in weights:
            path = pretrained.find(w)
            typer.echo(f"{w}  {path if path is not None else 'not present'}")
            if path is None:
                missing.append(w)
        if missing:
            raise pretrained.WeightsMissingError(
                f"{len(missing)} weight(s) of model set {name!r} not present: {', '.join(missing)}; run "
                f"`styleclip weights download {name}`")
        return
    typer.echo(str(pretrained.resolve(name)))



@app.command("train-mapper")
@friendly
def train_mapper_command(
    prompt: Optional[str] = typer.Option(None, help="What the mapper edits toward, e.g. 'mohawk' (not with "
                                         "--universal)."),
    universal: bool = typer.Option(False, "--universal", help="Train the text-conditioned mapper for any prompt "
                                   "(no text needed: trained on CLIP image-embedding differences of pairs of "
                                   "generated faces)."),
    minutes: Optional[float] = typer.Option(None, help="--universal: stop after this many minutes of this run "
                                            "(resume later with --resume)."),
    latents: Optional[Path] = typer.Option(None, help="Training latents: .pt tensor [N,num_ws,512] (e.g. "
                                                      "e4e-inverted faces). Default: sampled from the generator."),
    val_latents: Optional[Path] = typer.Option(None, help="Validation latents (.pt). Default: held out from "
                                                          "--latents, or sampled."),
    num_latents: int = typer.Option(5000, help="Sampled training latents when no --latents file is given."),
    steps: int = typer.Option(50_000, help="Training steps (the paper: 50,000)."),
    batch_size: int = typer.Option(2, help="Latents per step (per process under torchrun: the effective batch "
                                   "is this x the number of processes)."),
    lr: float = typer.Option(0.5, help="Learning rate of the effective batch (not scaled with the number of "
                             "processes)."),
    optimizer: str = typer.Option("ranger", help="ranger (RAdam + Lookahead + GC, the paper's) or adam."),
    clip_lambda: float = typer.Option(1.0, help="Weight of the CLIP loss."),
    l2_lambda: float = typer.Option(0.8, help="Weight of the latent L2 loss."),
    id_lambda: float = typer.Option(0.1, help="Weight of the identity loss (off without an identity network)."),
    no_coarse: bool = typer.Option(False, "--no-coarse", help="No coarse sub-mapper (W+ rows of 4-8 px)."),
    no_medium: bool = typer.Option(False, "--no-medium", help="No medium sub-mapper (16-32 px)."),
    no_fine: bool = typer.Option(False, "--no-fine", help="No fine sub-mapper (64 px and up; keeps colours)."),
    val_interval: int = typer.Option(2000, help="Validate (and keep the best mapper) every N steps."),
    save_interval: int = typer.Option(2000, help="Write a resumable checkpoint every N steps."),
    image_interval: int = typer.Option(2000, help="Write a source|edited image grid every N steps."),
    seed: int = typer.Option(0, help="Seed of the sampled latents, the mapper's initial weights and shuffling."),
    init: str = typer.Option("auto", help="Starting point: 'universal' (or a universal mapper file): the mapper "
                             "is first fitted to the text-conditioned mapper's edit for this prompt (seconds), so "
                             "a few hundred steps suffice; 'none': random (the paper's); 'auto': universal when "
                             "one is found for this generator."),
    distill_steps: int = typer.Option(1000, help="Steps of fitting to the universal mapper (with --init)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: mappers/<prompt>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped."),
    model: Optional[str] = typer.Option(None, help=MODEL_HELP),
    checkpoint: Optional[Path] = typer.Option(None, help="Generator checkpoint (.pt, .pkl, .safetensors)."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
):
    """Train a latent mapper for one prompt (StyleCLIP method 2), or with --universal one for any prompt. Under `torchrun --nproc-per-node N`: data
    parallel (DistributedDataParallel) over N processes, effective batch N x --batch-size (docs/distributed.md)."""
    from tqdm import tqdm

    from . import factory

    if universal:
        if prompt is not None:
            raise ValueError("--universal trains one mapper for every prompt: leave out --prompt")
        return _train_universal(steps if steps != 50_000 else None, batch_size if batch_size != 2 else None,
                                num_latents if num_latents != 5000 else None, id_lambda if id_lambda != 0.1 else None, save_interval, seed,
                                out, resume, minutes, model, checkpoint, device)
    if prompt is None:
        raise ValueError("say what the mapper edits toward: --prompt 'mohawk' (or --universal)")
    from .editors.mapper import normalize_name
    from .errors import StyleClipError
    from .editors.mapper_training import MapperTrainConfig, load_latents, train_mapper
    from . import checks, outputs

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
    clip = factory.load_clip(_clip_name(None, model, checkpoint, g), device=dev)
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

    from .editors.universal_mapper_training import UniversalTrainConfig, train_universal_mapper

    defaults = UniversalTrainConfig()
    config = UniversalTrainConfig(steps=steps or defaults.steps, batch_size=batch_size or defaults.batch_size,
                                  num_latents=num_latents or defaults.num_latents,
                                  id_lambda=defaults.id_lambda if id_lambda is None else id_lambda,
                                  save_interval=min(save_interval, defaults.save_interval), seed=seed)
    model = _model(model, checkpoint)
    g = _generator(model, checkpoint, device)
    dev = g.w_avg.device
    from . import factory

    clip = factory.load_clip(model if checkpoint is None else None, device=dev)
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


# ---- global directions: channel relevance and alpha/beta sweeps -------------------------------------
MAX_SWEEP = 32  # values per sweep axis


def _floats(text: str, name: str, kind: str) -> list[float]:
    """Comma-separated numbers, each within LIMITS[kind]."""
    from . import checks

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, e.g. -5,0,5; got {text[:60]!r}") from None
    if not values:
        raise ValueError(f"{name} is empty")
    if len(values) > MAX_SWEEP:
        raise ValueError(f"{name} has {len(values)} values; at most {MAX_SWEEP}")
    lo, hi = LIMITS[kind]
    for v in values:
        checks.number(v, f"each value of {name}", lo=lo, hi=hi)
    return values


def _stats_for(g, stats: Optional[Path], samples: int):
    from .stylespace import EtaPrinter, load_or_compute_stats

    if stats is not None:
        return load_or_compute_stats(g, stats)
    return load_or_compute_stats(g, n=samples, progress=EtaPrinter("style statistics", _say))


def _join_world(device: str):
    """Under torchrun: join the process group (gloo on CPU, NCCL on CUDA) and use this rank's device."""
    from . import distributed
    from .factory import resolve_device

    device = distributed.local_device(device)
    world = distributed.init_from_env(resolve_device(device))
    if world.size > 1:
        _say(f"torchrun: {world.size} processes ({world.backend})")
    return world, device


def _say(message: str) -> None:
    """A progress line on stderr, from rank 0 only under torchrun."""
    from .distributed import world

    if world().is_main:
        typer.echo(message, err=True)


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
    batch_size: Optional[int] = typer.Option(None, help="Image pairs per forward (exact protocol; default by size)."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
):
    """Compute channel relevance (fs3) for global directions; resumes an interrupted run. Under
    `torchrun --nproc-per-node N` the channels are shared out among N processes (see docs/distributed.md)."""
    from . import checks, outputs
    from .factory import load_clip

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
    from . import stylespace as ss
    from .distributed import world

    layers = ss.relevance_layers(g, all_layers=all_layers)
    n_ch = sum(g.layers[k].channels for k in layers)
    _say(f"{'estimating' if fast else 'computing'} relevance of {n_ch} channels over {images} images")
    eta = ss.EtaPrinter("relevance" + (f" (rank 0's share, of {world().size})" if world().size > 1 else ""), _say)
    ckpt = Path(str(out) + ".partial")
    if fast:
        rel = ss.estimate_relevance(g, enc, stats, n_images=images, layers=layers, checkpoint=ckpt, progress=eta)
    else:
        rel = ss.compute_relevance(g, enc, stats, n_images=images, layers=layers, batch_size=batch_size,
                                   checkpoint=ckpt, progress=eta)
    if world().is_main:
        rel.save(out)  # atomic, refuses NaN
        if images == ss.RELEVANCE_IMAGES and not all_layers:  # where the global engine looks for it
            rel.save(ss.relevance_cache_path(g, enc, "fast" if fast else "exact"))
    return rel


def _clip_name(clip: Optional[str], model: Optional[str], checkpoint: Optional[Path], g) -> Optional[str]:
    """The CLIP to load: --clip, else the model set's, else the one a `styleclip prepare` of this checkpoint
    used, else the default (FFHQ's)."""
    if clip:
        return clip
    if checkpoint is None:
        return model
    from .stylespace import find_prepared

    found = find_prepared(g)
    return found[1].get("clip") if found else None


def _not_faces_notice(g, checkpoint: Optional[Path]) -> Optional[str]:
    """For a checkpoint that `styleclip prepare` recorded as not a face generator: why the identity loss is off."""
    if checkpoint is None:
        return None
    from .stylespace import find_prepared

    found = find_prepared(g)
    if found is None or found[1].get("faces", True):
        return None
    return (f"notice: identity loss off: {checkpoint} is not a face generator "
            f"({found[1].get('faces_reason', 'recorded by styleclip prepare')}; {found[0]})")


@app.command()
@friendly
def prepare(
    out: Path = typer.Option(..., help="Folder for the style statistics, the relevance and prepared.json."),
    checkpoint: Optional[Path] = typer.Option(None, help="Your generator checkpoint (.pt, .pkl, .safetensors)."),
    model: Optional[str] = typer.Option(None, help="Or a model set (" + MODEL_HELP[len("Model set: "):]),
    clip: Optional[str] = typer.Option(None, help="CLIP model (default: the model set's; FFHQ's ViT-B/32 for a "
                                       "checkpoint). Later runs of this generator use the same one."),
    fast: bool = typer.Option(False, help="Relevance by the linearised estimator (much faster) instead of the "
                              "exact protocol."),
    images: int = typer.Option(100, help="Sampled images per channel for the relevance (official: 100)."),
    stats_samples: int = typer.Option(100_000, help="Samples for the style statistics."),
    faces: Optional[bool] = typer.Option(None, "--faces/--not-faces", help="Whether the generator makes faces "
                                         "(identity loss on or off).", show_default="detected in 8 samples"),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
):
    """Bring your own generator: style statistics + channel relevance (sharded under `torchrun
    --nproc-per-node N`), recorded with the generator's fingerprint; afterwards `--checkpoint` finds them."""
    from . import outputs
    from . import stylespace as ss
    from .distributed import world as current_world

    _check(images=images, stats_samples=stats_samples)
    _check_device(device)
    outputs.check_dir(out, "--out")
    if (checkpoint is None) == (model is None):
        raise ValueError("give --checkpoint (your generator) or --model")
    _, device = _join_world(device)
    g = _generator(model, checkpoint, device)
    _say(f"preparing {checkpoint or model} ({g.config.size} px, fingerprint {ss.generator_fingerprint(g)}) into {out}")
    if current_world().is_main:
        out.mkdir(parents=True, exist_ok=True)
    stats = ss.compute_stats(g, n=stats_samples, checkpoint=out / "stats.partial",
                             progress=ss.EtaPrinter("style statistics", _say))
    if current_world().is_main:
        stats.save(out / "stats.safetensors")
    from .factory import load_clip

    clip_name = clip or model
    enc = load_clip(clip_name, device=g.w_avg.device)
    rel = _relevance_run(g, enc, out / "fs3.npy", images=images, fast=fast, all_layers=False, stats=stats)
    if not current_world().is_main:
        return
    if faces is None:
        from .faces import generator_makes_faces

        faces, hits = generator_makes_faces(g)
        reason = f"a face detector found faces in {hits} of 8 samples"
    else:
        reason = "--faces" if faces else "--not-faces"
    record = {"checkpoint": str(checkpoint.resolve()) if checkpoint else None, "model": model,
              "clip": clip_name, "clip_fingerprint": ss.clip_fingerprint(enc), "faces": faces,
              "faces_reason": reason, "stats": "stats.safetensors", "stats_n": stats_samples,
              "stats_truncation": ss.STATS_TRUNCATION, "stats_seed": ss.STATS_SEED, "relevance": "fs3.npy",
              "relevance_method": "fast" if fast else "exact", "relevance_images": images,
              "processes": current_world().size}
    path = ss.register_prepared(g, out, record)
    typer.echo(f"wrote {out / 'stats.safetensors'}, {out / 'fs3.npy'} ({rel.fs3.shape[0]} channels) and {path}")
    if not faces:
        typer.echo(f"not a face generator ({reason}): the identity loss will be off for it; "
                   "pass --faces to say otherwise", err=True)


@app.command()
@friendly
def sweep(
    prompt: str = typer.Option(..., help="Target text, e.g. 'a smiling face'."),
    neutral: str = typer.Option("a face", help="Neutral text."),
    alphas: Optional[str] = typer.Option(None, help="Comma-separated strengths (columns).",
                                         show_default="-a,0,a around the model's alpha (" +
                                         _tuned_help("global", "strength", 4.1) + ")"),
    betas: Optional[str] = typer.Option(None, help="Comma-separated thresholds (rows).",
                                        show_default="2/3, 1 and 4/3 of the model's beta (" +
                                        _tuned_help("global", "beta", 0.15) + ")"),
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
    from . import checks, outputs
    from .imaging import grid, save_gif, to_pil, upscale_for_viewing
    from .types import Prompt

    from .factory import edit_defaults, global_direction_options
    from .imaging import label_grid

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
    editor = GlobalDirectionsEditor(g, enc, identity, config=GlobalDirectionsConfig(
        stats=st, relevance=relevance_file, **global_direction_options(tuned_for, identity)))
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


# ---- styleclip serve: the web app -----------------------------------------------------------------------
@app.command()
@friendly
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the app to the network."),
    port: int = typer.Option(7860, help="Port."),
    share: bool = typer.Option(False, "--share", help="Also open a temporary public gradio.live link."),
    model: Optional[str] = typer.Option(None, help="Model set: 'ffhq' (real weights), 'toy-faces' (embedded, "
                                        "offline), 'debug' (tiny random), or a generator checkpoint path.",
                                        show_default="ffhq, or toy-faces when FFHQ cannot be had"),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
    relevance: Optional[Path] = typer.Option(None, help="Global directions: channel relevance fs3.npy."),
    stats: Optional[Path] = typer.Option(None, help="Global directions: style statistics file."),
    mappers: Optional[list[Path]] = typer.Option(None, help="Folder of trained mappers (repeatable)."),
):
    """Start the web app (Gradio): random faces or photos, global directions, mappers, optimization."""
    import importlib.util

    from .errors import StyleClipError

    _check(port=port)
    _check_device(device)
    if importlib.util.find_spec("gradio") is None:
        raise StyleClipError("the web app needs gradio: pip install 'styleclip[app]'")
    try:
        from apps.gradio_app import serve as run
    except ModuleNotFoundError as e:
        if e.name not in ("apps", "apps.gradio_app"):
            raise
        raise StyleClipError("the web app module (apps/gradio_app.py) is not installed: reinstall styleclip "
                             "from its source tree (pip install '.[app]')") from None
    run(_model(model, None), host=host, port=port, share=share, device=device,
        relevance=str(relevance) if relevance else None, stats=str(stats) if stats else None,
        mappers=[str(m) for m in mappers] if mappers else None)


toy_app = typer.Typer(no_args_is_help=True, help="The embedded toy-faces models: train and evaluate.")
app.add_typer(toy_app, name="toy")


@toy_app.command("train")
@friendly
def toy_train(
    model: str = typer.Argument(..., help="clip, classifier, identity or generator."),
    steps: Optional[int] = typer.Option(None, help="Stop at this total step count."),
    minutes: Optional[float] = typer.Option(None, help="Stop after this many minutes of this run."),
    out: Optional[Path] = typer.Option(None, help="Run folder (checkpoint, log, exported weights).",
                                     show_default="toy-runs/<model>"),
    resume: bool = typer.Option(False, "--resume", help="Continue from <out>/checkpoint.pt."),
    init_from: Optional[Path] = typer.Option(None, help="Start from exported weights in this folder "
                                                        "(<model>.safetensors) with a fresh optimizer."),
    start_step: int = typer.Option(0, help="With --init-from: the step those weights were exported at."),
    seed: int = typer.Option(0, help="Seed of the initial weights and of the batch stream."),
    batch_size: Optional[int] = typer.Option(None, help="Batch size.",
                                            show_default="the recipe's; the run's with --resume"),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate.",
                                      show_default="the recipe's; the run's with --resume"),
    ckpt_every: int = typer.Option(100, help="Checkpoint every N steps."),
    eval_every: int = typer.Option(0, help="Evaluate every N steps (0: only at the end)."),
    threads: int = typer.Option(2, help="torch CPU threads."),
    tiny: bool = typer.Option(False, "--tiny", hidden=True, help="Tiny networks (tests)."),
    eval_size: int = typer.Option(512, help="Held-out evaluation images / pairs."),
    finetune: bool = typer.Option(False, "--finetune", help="generator: last phase, --init-from the exported "
                                  "weights: train the synthesis on the mapping's outputs, truncated like the CLI."),
    anneal: bool = typer.Option(False, "--anneal", help="Decay the learning rate to zero (half cosine) by --steps."),
    partial_captions: Optional[float] = typer.Option(
        None, help="clip: fraction of captions naming only some attributes ('a bald face', 'a face'), each image "
        "a positive of every caption it matches.", show_default="0; the run's with --resume"),
):
    """Train a toy-faces model (resumable; deterministic given the seed)."""
    import torch

    from .toy.train import CHECKPOINT, load_checkpoint, make_task, run_training

    from . import outputs

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
                                          show_default="the packaged styleclip/assets/toy_faces"),
    n: int = typer.Option(512, help="Held-out evaluation images / pairs."),
):
    """Evaluation figures of exported toy weights, as JSON."""
    import json

    from .toy.train import ASSETS, evaluate_exported

    _check(n=n)
    typer.echo(json.dumps(evaluate_exported(model, weights or ASSETS, n=n), indent=1))


@toy_app.command("stylespace")
@friendly
def toy_stylespace(
    images: int = typer.Option(100, help="Sampled images per channel for the relevance (official: 100)."),
    threads: int = typer.Option(2, help="torch CPU threads."),
):
    """Compute the packaged toy model's style statistics, exact channel relevance and the channels' identity
    cost into the package (styleclip/assets/stylespace/), where the global-directions engine finds them."""
    import torch

    from . import identity_cost as ic
    from . import stylespace as ss
    from .factory import load_clip, load_generator, load_identity

    _check(images=images, threads=threads)
    torch.set_num_threads(threads)
    g, enc = load_generator("toy-faces"), load_clip("toy-faces")
    say = lambda m: typer.echo(m, err=True)  # noqa: E731
    stats = ss.compute_stats(g, progress=ss.EtaPrinter("style statistics", say))
    stats_path = stats.save(ss.SHIPPED_DIR / ss.stats_cache_path(g).name)
    settings = {} if images == ss.RELEVANCE_IMAGES else {"n_images": images}
    out = ss.SHIPPED_DIR / ss.relevance_cache_path(g, enc, "exact", **settings).name
    rel = ss.compute_relevance(g, enc, stats, n_images=images, checkpoint=Path(str(out) + ".partial"),
                               progress=ss.EtaPrinter("relevance", say))
    rel.save(out)
    identity = load_identity("toy-faces")
    cost = ic.compute_identity_cost(g, identity, stats, progress=ss.EtaPrinter("identity cost", say))
    cost_path = cost.save(ss.SHIPPED_DIR / ic.cache_path(g, identity).name)
    typer.echo(f"wrote {stats_path}, {out} ({rel.fs3.shape[0]} x {rel.fs3.shape[1]}) and {cost_path}")


def main():
    """The `styleclip` command: process settings for speed (styleclip.runtime), then the Typer app."""
    from .runtime import keep_freed_memory

    keep_freed_memory()
    app()


if __name__ == "__main__":
    sys.exit(main())
