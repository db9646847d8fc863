"""`styleclip edit`: edit faces toward a text or a reference image."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from styleclip.cli.common import MODEL_HELP, _StepBar, _check, _check_device, _check_text, _clip_name, _generator, _identity, _model, _not_faces_notice, _photo_warning, friendly


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
    from styleclip.sources import latents_from_dir, latents_from_seeds, load_latent_file, parse_seeds

    if latent is not None:
        return load_latent_file(latent, generator)
    if latents is not None:
        return latents_from_dir(latents, generator)
    return latents_from_seeds(generator, parse_seeds(seeds) if seeds is not None else [seed or 0], truncation)


def _invert_options(model, g, identity, *, steps, pti_steps, target_psnr, target_identity, use_cache=True):
    """invert_face's keyword arguments for this model set (its tuned projector / PTI settings)."""
    from styleclip import factory
    from styleclip.photo import pti
    from styleclip.photo.fidelity import FidelityTarget
    from styleclip.photo.invert import InversionConfig, default_encoder

    proj = {**factory.edit_defaults(model, "projector"), **({"steps": steps} if steps is not None else {})}
    tune = {**factory.edit_defaults(model, "pti"), **({"steps": pti_steps} if pti_steps is not None else {})}
    return dict(encoder=default_encoder(g, None, device=g.w_avg.device), identity=identity,
                projector=InversionConfig(**proj), pti=pti.PTIConfig(**tune),
                target=FidelityTarget(psnr=target_psnr, identity=target_identity), use_cache=use_cache)


def _edit_photo(image: Path, g, editor, text, *, face, invert, invert_options, out: Path, crop_only: bool,
                model=None):
    """Invert and edit the chosen faces of a photo, paste the edits back, save everything with the figures."""
    from styleclip.photo.faces import load_image
    from styleclip.pipelines.photo import edit_photo, find_faces, parse_face, save_photo_edit

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
    from styleclip.factory import MODEL_EDIT_DEFAULTS

    tuned = [f"{model} {v[engine][key]:g}" for model, v in MODEL_EDIT_DEFAULTS.items()
             if v.get(engine, {}).get(key, paper) != paper]
    return ", ".join([f"{paper:g}"] + tuned)


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
    from styleclip.util import checks, outputs
    from styleclip import factory
    from styleclip.util.imaging import grid, save_gif, to_pil, upscale_for_viewing
    from styleclip.sources import save_latent
    from styleclip.types import Prompt

    if prompt is None and target_image is None:
        raise ValueError("say what to edit toward: --prompt 'mohawk' or --target-image face.png")
    _check(seed=seed, invert_steps=invert_steps, truncation=truncation, steps=steps, lr=lr, clip_views=clip_views,
           l2_lambda=l2_lambda, id_lambda=id_lambda, checkpoint_min_res=checkpoint_min_res, strength=strength,
           beta=beta, batch_size=batch_size)
    _check_text(prompt=prompt, neutral=neutral)
    _check_device(device)
    if seeds is not None:
        from styleclip.sources import parse_seeds

        parse_seeds(seeds)  # a bad --seeds fails before anything loads
    outputs.check_dir(out, "--out")
    if checkpoint_min_res is not None:  # less memory asked for: freed memory goes back to the system (runtime.py)
        from styleclip.util.runtime import keep_freed_memory

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
        from styleclip.encoders.targets import load_reference_image

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
        from styleclip.toy.evaluate import IDENTITY_COMPARES, IDENTITY_IGNORES

        typer.echo(f"(toy-faces: identity similarity compares {IDENTITY_COMPARES} and ignores {IDENTITY_IGNORES} "
                   "by design; unrelated attributes are read by the evaluation classifier)")
    first = source.labels[0]
    kinds = ", ".join(p.name.replace(first, "<label>" if n > 1 else first, 1) for p in written[0])
    which = f" for <label> = {', '.join(source.labels[:4])}{', ...' if n > 4 else ''}" if n > 1 else ""
    typer.echo(f"wrote {n} edit(s) to {out}/: {kinds}{which} (latent in {' and '.join(sorted(spaces))} space)")


def _toy_judge(model: Optional[str], device):
    """On toy-faces: `judge(src_img, edit_img, prompt)` -> per edit (unrelated kept, compared, changes), read by
    the evaluation classifier; None for other models."""
    from styleclip.factory import TOY

    if model not in ("toy-faces", TOY):
        return None
    from styleclip.toy.evaluate import unrelated_changes
    from styleclip.toy.assets import load_toy_classifier

    classifier = load_toy_classifier().to(device)
    return lambda src, img, prompt: unrelated_changes(
        classifier, src, img, prompt.target if prompt.image is None else None, prompt.image)
