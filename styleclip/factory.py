"""Builds the objects the front ends need from names and paths: the one place that combines the
registry (`pretrained`), the readers (`convert`) and the networks."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from styleclip import models
from styleclip.store import registry as pretrained
from styleclip.store.cache import cache_folder
from styleclip.store.readers import build_generator, read_generator, save_generator
from styleclip.errors import CheckpointError, InputError, StyleClipError, WeightsMissingError
from styleclip.nets.stylegan2 import Generator, GeneratorConfig

TOY = models.TOY_FACES.name  # the embedded set's name, for callers not yet reading the records in styleclip.models
DEBUG_GENERATOR = GeneratorConfig(size=32, style_dim=64, n_mlp=2, channel_base=512, channel_max=32,
                                  channel_multiplier=1)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; an unavailable explicit device is an error."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N, mps or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StyleClipError("--device cuda was asked for, but no CUDA device is available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise StyleClipError("--device mps was asked for, but MPS is not available")
    return dev


def debug_generator(seed: int = 0) -> Generator:
    """The `debug` generator: tiny (32 px), random weights from a fixed seed, no download."""
    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(seed)
        gen = Generator(DEBUG_GENERATOR)
        # random noise strengths so that noise_mode matters even in the tiny model
        for m in gen.modules():
            if m.__class__.__name__ == "NoiseInjection":
                m.weight.data.normal_(0, 0.1)
    gen.w_avg.copy_(gen.mean_latent(1024))
    return gen.eval().requires_grad_(False)


def default_model(notice=None) -> str:
    """The model set to use when none is named (see `models.default_model_name`)."""
    return models.default_model_name(notice)


def load_generator(source: str | Path | None = None, *, device: str | torch.device = "cpu",
                   cache: bool = True) -> Generator:
    """A frozen generator in eval mode from a model-set name (`ffhq`, `debug`, ...), a registry weight name
    (`stylegan2-ffhq-1024`) or a checkpoint path (.pt, .pkl, .safetensors).

    Foreign checkpoints (.pt / .pkl) are converted once and cached as safetensors in the user cache.
    """
    device = resolve_device(device)
    name = str(source) if source is not None else models.DEFAULT_MODEL
    ms = _model_set(name)
    if ms is not None:
        if ms.builtin == "debug":
            return debug_generator().to(device)
        if ms.builtin == "toy":
            from styleclip.toy.assets import load_toy_generator

            return load_toy_generator().to(device)
        name = ms.generator
    if name in pretrained.REGISTRY:
        return _generator_from_file(pretrained.ensure(name), cache=cache).to(device)
    path = Path(source)
    if not path.exists() and path.suffix == "":
        known = ", ".join(sorted(pretrained.MODEL_SETS))
        raise StyleClipError(f"unknown model {name!r} (known: {known}) and no file by that name")
    return _generator_from_file(path, cache=cache).to(device)


def _generator_from_file(path: Path, *, cache: bool) -> Generator:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if cache and path.suffix != ".safetensors":
        cached = pretrained.converted_path(path)
        if cached.is_file():
            try:
                return build_generator(*read_generator(cached), source=str(cached))
            except CheckpointError:
                cached.unlink(missing_ok=True)  # a stale or broken cache entry: convert again
    config, state = read_generator(path)
    gen = build_generator(config, state, source=str(path))
    if cache and path.suffix != ".safetensors":
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            save_generator(gen, cached)
        except OSError as e:  # a read-only cache must not stop the edit
            warnings.warn(f"could not cache the converted checkpoint at {cached}: {e}")
    return gen


def load_clip(model: str | None = None, *, device: str | torch.device = "cpu", official_input: bool = False):
    """The CLIP encoder of a model set (`ffhq` -> OpenAI ViT-B/32, `debug` -> tiny random), or any open_clip
    model as 'MODEL_NAME' or 'MODEL_NAME:PRETRAINED_TAG_OR_FILE'."""
    from styleclip.encoders.clip import DEBUG_CLIP_CONFIG, DEFAULT_MODEL, DEFAULT_PRETRAINED, ClipEncoder

    device = resolve_device(device)
    name = model or models.DEFAULT_MODEL
    ms = _model_set(name)
    if ms is not None and ms.builtin == "debug":
        return ClipEncoder.from_config(DEBUG_CLIP_CONFIG, seed=0, name="debug",
                                       official_input=official_input).to(device)
    if ms is not None and ms.builtin == "toy":
        from styleclip.toy.assets import load_toy_clip

        return load_toy_clip().to(device)
    if ms is not None:
        name = ms.clip
    if name == "clip-vit-b32-openai":
        model_name, tag = DEFAULT_MODEL, DEFAULT_PRETRAINED
        local = pretrained.find(name) or pretrained.find_in_hf_cache(name)  # weights folders, then HF cache
        if local is not None:
            tag = str(local)
        elif pretrained.offline():
            raise WeightsMissingError(pretrained.missing_message(name, [pretrained.OFFLINE_REASON]))
    else:
        model_name, _, tag = name.partition(":")
        tag = tag or None
    local_file = tag is not None and Path(tag).is_file()
    if pretrained.offline() and tag is not None and not local_file:
        raise WeightsMissingError(f"CLIP weights {model_name}:{tag} would be downloaded, but "
                                  f"{pretrained.OFFLINE_REASON}; pass --clip {model_name}:/path/to/weights_file")
    try:
        enc = ClipEncoder.from_pretrained(model_name, tag, cache_dir=str(cache_folder("open_clip")),
                                          official_input=official_input)
    except Exception as e:
        if not local_file or isinstance(e, StyleClipError):
            return _clip_error(e, name, model_name, tag)
        raise CheckpointError(f"{tag}: unreadable CLIP weights for {model_name} (truncated, corrupt or another "
                              f"model's): {' '.join(str(e).split())[:200]}") from None
    if local_file:
        from styleclip.util.checks import finite_tensors

        finite_tensors(dict(enc.model.state_dict()), f"{tag}: the CLIP weights", error=CheckpointError)
    return enc.to(device)


def _clip_error(e: Exception, name: str, model_name: str, tag):
    """Raise the one-line error for a CLIP model open_clip could not build or download."""
    text = " ".join(str(e).split())
    if isinstance(e, StyleClipError):
        raise e
    if isinstance(e, RuntimeError) and any(m in text for m in ("Unknown model", "Pretrained weights",
                                                               "not found in built-ins", "not a known tag")):
        raise StyleClipError(f"CLIP model {name!r}: {text[:300]}") from None
    if not isinstance(e, (RuntimeError, OSError)):
        raise StyleClipError(f"CLIP model {name!r} could not be loaded: {text[:200]}") from None
    if name == "clip-vit-b32-openai":
        raise WeightsMissingError(pretrained.missing_message(name, [f"open_clip's download: {text[:160]}"])) \
            from None
    raise WeightsMissingError(f"CLIP weights {model_name}/{tag} could not be loaded or downloaded ({text[:200]}); "
                              f"with no network, put the open_clip weights file somewhere and pass "
                              f"--clip {model_name}:/path/to/file") from None


def weight_problem(name: str, path: Path) -> str | None:
    """Why the present file of registry weight `name` is unusable (size or sha256 mismatch, or, without a
    published sha256, it does not load as its kind), or None when it is fine."""
    problem = pretrained.integrity_problem(name, path)
    if problem is not None or pretrained.get_spec(name).sha256:
        return problem
    try:
        _load_as(pretrained.get_spec(name).kind, path)
    except StyleClipError as e:
        return " ".join(str(e).split())[:200]
    return None


def _load_as(kind: str, path: Path) -> None:
    """Read `path` the way a weight of `kind` is read (no network, nothing built that is not needed)."""
    from styleclip.util.checks import file_tensors, reading

    if kind == "generator":
        read_generator(path)
    elif kind == "mapper":
        from styleclip.store.mappers import load_mapper

        load_mapper(path)
    elif kind == "identity":
        from styleclip.encoders.identity import read_state_dict

        read_state_dict(path)
    elif kind == "relevance":
        from styleclip.util.checks import read_npy

        read_npy(path, "relevance file")
    elif path.suffix == ".bz2":
        import bz2

        with reading(path, "compressed file"), bz2.open(path) as f:
            while f.read(1 << 20):
                pass
    else:
        from styleclip.store.readers import load_torch_file

        try:
            obj = load_torch_file(path, what=f"{kind} weights")
        except CheckpointError:
            import zipfile

            if not zipfile.is_zipfile(path):  # a TorchScript archive (the JIT CLIP) is a zip, not a state dict
                raise
            with reading(path, f"{kind} weights"), zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise CheckpointError(f"{path}: corrupt member {bad}") from None
            return
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else {}
        if isinstance(state, dict):
            file_tensors(state, str(path))


def _model_set(model):
    """The record of a model-set name; None for anything else (a checkpoint, a path, None)."""
    return models.MODEL_SETS.get(str(model)) if model is not None else None


def default_engine(model: str | None) -> str:
    """The engine `styleclip edit` uses when none is named (the model set's record)."""
    return models.for_source(model).default_engine


def edit_defaults(model: str | None, engine: str, *, keep_identity: bool = False) -> dict:
    """The model set's tuned settings of `engine` (or 'projector' / 'pti') as Config keyword arguments: the
    fields where its preset differs from the paper's (empty for ffhq and checkpoints). keep_identity: global's
    alpha / beta under an identity budget. For callers outside the edit plan (benchmarks, `sweep`): all of a
    tuned preset's fields (optimize / universal without `strength`, which is the Prompt's)."""
    import dataclasses

    ms = _model_set(model)
    if ms is None:
        return {}
    if engine in ("projector", "pti"):
        return getattr(ms.presets, engine).overrides()
    preset, paper = ms.presets.engine(engine), models.PAPER.engine(engine)
    if preset == paper:
        return {}
    out = {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset)
           if not f.name.startswith("budget_") and (engine == "global" or f.name != "strength")}
    if engine == "global":
        out["strength"], out["beta"] = preset.alpha_beta(keep_identity)
    return out


GLOBAL_DIRECTION_OPTIONS = ("ridge", "identity_damping")  # GlobalDirectionsConfig fields a model set may tune


def global_direction_options(model: str | None, identity=None) -> dict:
    """The model set's refinements of the global direction (GlobalDirectionsConfig ridge / identity_damping;
    empty: the paper's delta_s). Identity damping needs the identity net: left out when `identity` is None."""
    preset = models.for_source(model).presets.global_
    return {k: getattr(preset, k) for k in GLOBAL_DIRECTION_OPTIONS
            if getattr(preset, k) is not None and (k != "identity_damping" or identity is not None)}


def auto_strength_config(model: str | None, identity=None, **overrides):
    """AutoStrengthConfig for a model set: its identity net's measured verification threshold and gain scale
    where its record says so; target="identity" (an identity budget) tries BUDGET_CANDIDATES unless
    candidates are given."""
    from styleclip.editors.auto_strength import BUDGET_CANDIDATES, AutoStrengthConfig

    if overrides.get("target") == "identity":
        overrides.setdefault("candidates", BUDGET_CANDIDATES)
    ms = _model_set(model)
    preset = ms.presets.auto_strength if ms is not None else models.PAPER.auto_strength
    if preset.measured_threshold and "identity_threshold" not in overrides:
        from styleclip.toy.evaluate import identity_threshold

        overrides["identity_threshold"] = identity_threshold()
    if preset.gain_scale is not None:
        overrides.setdefault("gain_scale", preset.gain_scale)
    return AutoStrengthConfig(**overrides)


def describe_checkpoint(generator, path: str | Path) -> models.Checkpoint:
    """What `styleclip prepare` recorded for this generator (its CLIP, whether it draws faces), if anything."""
    from styleclip.store.prepared import find_prepared

    found = find_prepared(generator)
    if found is None:
        return models.Checkpoint(Path(path))
    folder, record = found
    return models.Checkpoint(Path(path), clip=record.get("clip"), faces=bool(record.get("faces", True)),
                             faces_reason=record.get("faces_reason", "recorded by styleclip prepare"),
                             prepared=folder)


def clip_for(generator=None, *, model: str | None = None, checkpoint: str | Path | None = None,
             clip: str | None = None) -> str:
    """THE rule for which CLIP goes with a generator (edit, train-mapper, serve, the app): `clip` when given,
    else the model set's, else for a checkpoint the one its `styleclip prepare` recorded, else FFHQ's."""
    if clip:
        return str(clip)
    if checkpoint is None and _model_set(model) is not None:
        return _model_set(model).clip
    if generator is not None and (checkpoint is not None or model is not None):
        recorded = describe_checkpoint(generator, checkpoint if checkpoint is not None else model).clip
        if recorded:
            return recorded
    return models.CHECKPOINT.clip


class _UnrelatedJudge:
    """`judge(src_img, edit_img, prompt)` -> per edit (unrelated attributes kept, compared, changes), read by
    the toy evaluation classifier; `note` says what the figures mean."""

    def __init__(self, device):
        from styleclip.toy.assets import load_toy_classifier
        from styleclip.toy.evaluate import IDENTITY_COMPARES, IDENTITY_IGNORES

        self.classifier = load_toy_classifier().to(device)
        self.note = (f"(toy-faces: identity similarity compares {IDENTITY_COMPARES} and ignores {IDENTITY_IGNORES} "
                     "by design; unrelated attributes are read by the evaluation classifier)")

    def __call__(self, src, img, prompt):
        from styleclip.toy.evaluate import unrelated_changes

        return unrelated_changes(self.classifier, src, img, prompt.target if prompt.image is None else None,
                                 prompt.image)


def load_unrelated_judge(device) -> _UnrelatedJudge:
    """The judge of the attributes an edit should leave alone (the toy world's evaluation classifier)."""
    return _UnrelatedJudge(resolve_device(device))


ENGINE_MODULES = {"optimize": "styleclip.editors.optimization", "global": "styleclip.editors.global_directions",
                  "mapper": "styleclip.editors.mapper", "universal": "styleclip.editors.universal_mapper"}


def is_universal_mapper(mapper) -> bool:
    """True for 'universal' or a universal mapper file (`--engine mapper --mapper universal`)."""
    if str(mapper) == "universal":
        return True
    from styleclip.store.mappers import is_universal_file

    return isinstance(mapper, (str, Path)) and Path(mapper).is_file() and is_universal_file(mapper)


def create_editor(kind: str, generator, clip, identity=None, **config):
    """An engine by name with its Config built from keyword overrides.

    'optimize': OptimizationConfig fields. 'global': GlobalDirectionsConfig fields (relevance / stats /
    identity_cost may be paths; missing ones are found or computed: `relevance_method`, `compute_missing`,
    `progress` say how). 'mapper': `mapper=` a file or name;
    `mapper="universal"` (or a universal mapper file) gives the universal mapper ('universal':
    UniversalMapperConfig fields)."""
    import importlib

    if kind == "mapper" and is_universal_mapper(config.get("mapper")):
        kind = "universal"
    if kind not in ENGINE_MODULES:
        raise StyleClipError(f"unknown engine {kind!r}; choose one of: {', '.join(sorted(ENGINE_MODULES))}")
    importlib.import_module(ENGINE_MODULES[kind])  # registers the engine
    from styleclip.editors.base import ENGINES

    cls = ENGINES[kind]
    if kind == "global":  # the engine takes data: find, read or compute its S-space files here
        from styleclip.store.stylespace_files import global_direction_inputs

        inputs = global_direction_inputs(
            generator, clip, identity, **{k: config.pop(k) for k in ("stats", "relevance", "identity_cost",
                                                                    "relevance_method", "compute_missing",
                                                                    "progress") if k in config},
            identity_damping=config.get("identity_damping"))
        return cls(generator, clip, identity, config=cls.config_class(**config, **inputs))
    if kind == "mapper":  # a file, trained prompt or official name: read here, the engine takes the network
        from styleclip.store.mappers import load_mapper_for

        mapper = config.pop("mapper", None)
        if isinstance(mapper, (str, Path)):
            mapper = load_mapper_for(mapper, generator, config.pop("folders", None))
            if "residual_scale" not in config and "residual_scale" in mapper.info:
                config["residual_scale"] = float(mapper.info["residual_scale"])
        return cls(generator, clip, identity, config=cls.config_class(mapper=mapper, **config))
    if kind == "universal":
        from styleclip.store.mappers import UNIVERSAL, load_universal_mapper_for

        mapper = config.pop("mapper", None) or UNIVERSAL
        if isinstance(mapper, (str, Path)):
            mapper = load_universal_mapper_for(mapper, generator)
        if config.get("beta") is not None and config.get("relevance") is None:  # the global engine's lookup
            from styleclip.store.stylespace_files import global_direction_inputs

            config["relevance"] = global_direction_inputs(generator, clip)["relevance"]
        return cls(generator, clip, identity, config=cls.config_class(mapper=mapper, **config))
    cfg = config.pop("config", None) or cls.config_class(**config)  # optimize
    start = None
    if cfg.init == "universal" and cfg.mode == "edit":
        start = create_editor("universal", generator, clip, mapper=cfg.init_mapper, min_change=cfg.init_min_change)
    return cls(generator, clip, identity, config=cfg, start=start)


def distill_teacher(init: str | Path, generator, clip, prompt: str, *, model: str | None = None,
                    neutral: str = "a face"):
    """(teacher or None, what it is) for training a per-prompt mapper (`train-mapper --init`): 'none' -> the
    paper's random start; 'universal' or a universal mapper file -> that mapper's whole W+ change toward
    `prompt` (with the model set's min_change); 'auto' -> 'universal' when one is found for this generator,
    else none."""
    from styleclip.store.mappers import find_universal_mapper

    init = str(init)
    if init == "none":
        return None, "random (the paper's)"
    if init not in ("auto", "universal") and not is_universal_mapper(init):
        raise InputError(f"--init {init}: expected auto, none, universal or a universal mapper file")
    try:
        path = find_universal_mapper("universal" if init == "auto" else init, generator)
    except StyleClipError:
        if init != "auto":
            raise
        return None, "random (the paper's; no universal mapper found for this generator)"
    floor = models.for_source(model).presets.universal.min_change
    editor = create_editor("universal", generator, clip, mapper=path, min_change=floor)
    return editor.teacher(prompt, neutral), f"distilled from the universal mapper {path}"


IDENTITY_ALIASES = {"arcface": "arcface-ir-se50", "facenet": "facenet-vggface2"}


def load_identity(source: str | Path | None = None, *, device: str | torch.device = "cpu"):
    """A frozen identity net (`embed(img [-1,1]) -> unit [N,512]`) from a model-set name (`ffhq` -> ArcFace
    IR-SE50, `debug` -> tiny random), a registry name or alias (`arcface-ir-se50`, `facenet`,
    `facenet-vggface2`), or a weights file (IR-SE50 `.pth`, or a facenet-pytorch state dict). None when the
    model set has no identity net. Registry weights are downloaded when missing (`pretrained.ensure`)."""
    from styleclip.encoders.identity import ArcFaceIdentity, FaceNetIdentity, debug_identity, read_state_dict

    device = resolve_device(device)
    name = str(source) if source is not None else models.DEFAULT_MODEL
    ms = _model_set(name)
    if ms is not None:
        if ms.identity is None:
            return None
        if ms.builtin == "debug":
            return debug_identity().to(device)
        if ms.builtin == "toy":
            from styleclip.toy.assets import load_toy_identity

            return load_toy_identity().to(device)
        name = ms.identity
    name = IDENTITY_ALIASES.get(name, name)
    if name in pretrained.REGISTRY:
        spec = pretrained.get_spec(name)
        if spec.kind != "identity":
            raise StyleClipError(f"{name!r} is a {spec.kind} weight, not an identity net")
        path = pretrained.ensure(name)
        cls = FaceNetIdentity if name.startswith("facenet") else ArcFaceIdentity
        return cls.from_file(path).to(device)
    path = Path(name)
    if not path.is_file():
        known = ", ".join(sorted(set(pretrained.MODEL_SETS) | set(IDENTITY_ALIASES)))
        raise StyleClipError(f"unknown identity net {name!r} (known: {known}) and no file by that name")
    state = read_state_dict(path)
    cls = FaceNetIdentity if any(k.startswith("conv2d_1a.") for k in state) else ArcFaceIdentity
    return cls.from_state_dict(state, source=str(path)).to(device)
