"""The latent mapper engine: mapper files (official `.pt` and ours), lookup by prompt, and inference.

Official checkpoints (SPEC 2.5, WEIGHTS 6): `torch.load`-able dicts {state_dict: mapper.* + decoder.*, opts};
the embedded generator (`decoder.*`) is ignored here and the levels are inferred from which
`mapper.*_mapping` keys exist (the stored opts are unreliable, WEIGHTS 10.13).
Ours: `.safetensors` with the LevelsMapper state dict and JSON metadata (prompt, levels, the generator it was
trained for, training settings, final losses).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from styleclip.util.checks import file_tensors, finite_tensors, reading
from styleclip.errors import CheckpointError, InputError, WeightsMissingError, one_line, summarize
from styleclip.losses import clip_loss
from styleclip.util.outputs import write_atomic
from styleclip.nets.mapper import LEVELS, MODULE_NAMES, LevelsMapper
from styleclip.types import EditResult, Latent, ProgressFn, Prompt
from styleclip.editors.auto_strength import AutoStrengthConfig, pick_strengths
from styleclip.editors.base import register_engine, report

FORMAT_TAG = "styleclip-mapper"

# The 14 published mappers (WEIGHTS.md 6): name -> levels. All for StyleGAN2 FFHQ 1024 (18 W+ rows).
OFFICIAL_MAPPERS: dict[str, tuple[str, ...]] = {
    **{n: ("coarse", "medium") for n in ("afro", "angry", "bobcut", "bowlcut", "curly_hair", "mohawk",
                                          "surprised")},
    **{n: LEVELS for n in ("beyonce", "depp", "hilary_clinton", "purple_hair", "taylor_swift", "trump",
                           "zuckerberg")},
}


def normalize_name(text: str) -> str:
    """'Curly hair' / 'curly-hair' -> 'curly_hair' (how prompts and official names are compared)."""
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


@dataclass
class MapperFile:
    """A loaded mapper and what is known about it (`info`: prompt, levels, generator, training, losses)."""

    mapper: LevelsMapper
    info: dict
    path: Path | None = None

    @property
    def prompt(self) -> str | None:
        return self.info.get("prompt")


# ---- reading / writing -----------------------------------------------------------------------------
def load_mapper(path: str | Path) -> MapperFile:
    """Read an official mapper `.pt` or one of ours (`.safetensors`); strict keys; one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such mapper file")
    with reading(path, "mapper checkpoint"):
        with open(path, "rb") as f:
            head = f.read(16)
        if len(head) < 8:
            raise CheckpointError(f"{path}: file is too small to be a mapper checkpoint ({len(head)} bytes)")
        n = int.from_bytes(head[:8], "little")
        if head[8:9] == b"{" and 0 < n < 100_000_000:
            return _load_safetensors(path)
        if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
            return _load_official(path)
    raise CheckpointError(f"{path}: not a mapper checkpoint (expected an official .pt or a styleclip .safetensors)")


def mapper_from_state_dict(state: dict[str, torch.Tensor], *, num_ws: int = 18, source: str = "state dict",
                           split: tuple[int, int, int] | None = None) -> LevelsMapper:
    """Build a LevelsMapper whose levels are the sub-mappers present in `state` (keys without `mapper.`),
    and load it strictly."""
    file_tensors(state, source)
    unknown = [k for k in state if k.split(".")[0] not in MODULE_NAMES.values()]
    if unknown:
        hint = " (StyleSpace mappers are not supported)" if any(k.startswith("mapper_") for k in unknown) else ""
        raise CheckpointError(f"{source}: unexpected mapper keys {summarize(unknown)}{hint}")
    present = {lv for lv, name in MODULE_NAMES.items() if any(k.startswith(name + ".") for k in state)}
    if not present:
        raise CheckpointError(f"{source}: no mapper weights (expected {MODULE_NAMES['coarse']}.mapping.1.weight ...)")
    some = next((k for k in state if k.endswith(".weight") and state[k].ndim == 2), None)
    if some is None:
        raise CheckpointError(f"{source}: no 2-D mapper weight found")
    style_dim = state[some].shape[-1]
    if not 1 <= style_dim <= 4096 or not 1 <= num_ws <= 64:
        raise CheckpointError(f"{source}: implausible mapper size (style_dim {style_dim}, num_ws {num_ws})")
    try:
        mapper = LevelsMapper(num_ws, style_dim, split=split, **{f"no_{lv}": lv not in present for lv in LEVELS})
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from None
    expected = {k: tuple(v.shape) for k, v in mapper.state_dict().items()}
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} (expected {list(s)})" for k, s in expected.items()
             if k in state and tuple(state[k].shape) != s]
    if missing or extra or wrong:
        parts = [f"{what} {summarize(v)}" for what, v in (("missing keys", missing), ("unexpected keys", extra),
                                                    ("shape mismatch", wrong)) if v]
        raise CheckpointError(f"{source}: does not match a LevelsMapper: " + "; ".join(parts))
    mapper.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return mapper.eval()


def _load_official(path: Path) -> MapperFile:
    from styleclip.store.readers import load_torch_file

    ckpt = load_torch_file(path, what="mapper checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: expected an official StyleCLIP mapper checkpoint ({{'state_dict', 'opts'}})")
    opts = ckpt.get("opts") or {}
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, dict):
        raise CheckpointError(f"{path}: 'opts' is a {type(opts).__name__}, expected a dict or Namespace")
    state = {k[len("mapper."):]: v for k, v in ckpt["state_dict"].items()
             if k.startswith("mapper.") and isinstance(v, torch.Tensor)}
    if opts.get("work_in_stylespace") or opts.get("mapper_type", "LevelsMapper") != "LevelsMapper":
        raise CheckpointError(f"{path}: only LevelsMapper checkpoints are supported "
                              f"(mapper_type={opts.get('mapper_type')}, work_in_stylespace="
                              f"{opts.get('work_in_stylespace')})")
    size = opts.get("stylegan_size", 1024) or 1024
    if isinstance(size, bool) or not isinstance(size, int) or size not in [2 ** k for k in range(2, 14)]:
        raise CheckpointError(f"{path}: opts.stylegan_size {size!r} is not a power of two from 4 to 8192")
    num_ws = 2 * int(math.log2(size)) - 2
    mapper = mapper_from_state_dict(state, num_ws=num_ws, source=str(path))
    prompt = opts.get("description") if isinstance(opts.get("description"), str) else None
    name = normalize_name(path.stem)
    if prompt is None and name in OFFICIAL_MAPPERS:
        prompt = name.replace("_", " ")
    info = {"format": "official", "prompt": prompt, "levels": list(mapper.levels), "num_ws": num_ws,
            "residual_scale": 0.1, "generator": {"config": {"size": size}, "fingerprint": None},
            "training": {k: v for k, v in opts.items() if isinstance(v, (str, int, float, bool, type(None)))}}
    return MapperFile(mapper, info, path)


def _load_safetensors(path: Path) -> MapperFile:
    from styleclip.store.readers import load_safetensors_file

    state, meta = load_safetensors_file(path)
    if meta.get("format") != FORMAT_TAG:
        raise CheckpointError(f"{path}: not a styleclip mapper file (format {meta.get('format')!r})")
    try:
        info = json.loads(meta["info"])
        arch = info["architecture"]
        split = tuple(arch["split"])
        num_ws = int(arch["num_ws"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: broken mapper metadata ({one_line(e)})") from None
    mapper = mapper_from_state_dict(state, num_ws=num_ws, split=split, source=str(path))
    if list(mapper.levels) != list(arch.get("levels", mapper.levels)):
        raise CheckpointError(f"{path}: metadata levels {arch.get('levels')} do not match the weights "
                              f"{list(mapper.levels)}")
    return MapperFile(mapper, info, path)


def save_mapper(mapper: LevelsMapper, path: str | Path, *, info: dict | None = None) -> Path:
    """Write our `.safetensors` mapper file atomically (tmp + rename); `info` is stored as JSON metadata
    (prompt, generator {config, fingerprint}, training settings, losses, ...)."""
    from safetensors.torch import save_file

    path = Path(path)
    info = dict(info or {})
    info["architecture"] = {"type": "LevelsMapper", "num_ws": mapper.num_ws, "style_dim": mapper.style_dim,
                            "split": list(mapper.split), "levels": list(mapper.levels)}
    info.setdefault("levels", list(mapper.levels))
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in mapper.state_dict().items()}
    finite_tensors(tensors, f"mapper for {path}")
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": FORMAT_TAG,
                                                                                "info": json.dumps(info)}))


def generator_fingerprint(generator: torch.nn.Module) -> str:
    """sha256 (first 16 hex digits) of the generator's state dict: names, shapes and values."""
    h = hashlib.sha256()
    for k, v in sorted(generator.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


# ---- lookup by prompt ------------------------------------------------------------------------------
TOY_MAPPERS = Path(__file__).resolve().parent.parent / "assets" / "toy_faces" / "mappers"


def check_fits_generator(mapper, info: dict, generator, what: str) -> None:
    """A mapper's W+ shape must be the generator's (InputError); a recorded fingerprint of another generator
    only warns (the edits may be meaningless)."""
    if mapper.num_ws != generator.num_ws or mapper.style_dim != generator.config.style_dim:
        raise InputError(f"the {what} is for W+ [{mapper.num_ws},{mapper.style_dim}] but the generator has "
                         f"[{generator.num_ws},{generator.config.style_dim}]")
    fp = (info.get("generator") or {}).get("fingerprint")
    if fp and fp != generator_fingerprint(generator):
        warnings.warn(f"this {what} was trained for a different generator (fingerprint mismatch); "
                      "edits may be meaningless", stacklevel=3)


def default_mapper_dirs() -> list[Path]:
    """Where trained mappers are looked for: ./mappers (train-mapper's default output), <cache>/mappers and
    the mappers shipped for the embedded toy-faces model."""
    from styleclip.store import registry as pretrained

    return [Path("mappers"), pretrained.cache_dir() / "mappers", TOY_MAPPERS]


def trained_mappers(folders=None, generator=None) -> dict[str, Path]:
    """Our mapper files under `folders` (recursively): normalised prompt -> path (newest file wins). With a
    `generator`, only mappers trained for it (same fingerprint where the file records one)."""
    found: dict[str, tuple[float, Path]] = {}
    fingerprint = None  # computed once, only if a file records one (hashing a 1024 generator takes a while)
    for folder in (default_mapper_dirs() if folders is None else [Path(f) for f in folders]):
        if not folder.is_dir():
            continue
        for p in folder.rglob("*.safetensors"):
            info = _peek_info(p)
            prompt = info.get("prompt") if info else None
            if prompt is None:
                continue
            fp = (info.get("generator") or {}).get("fingerprint")
            if generator is not None and fp:
                fingerprint = fingerprint or generator_fingerprint(generator)
                if fp != fingerprint:
                    continue
            key = normalize_name(prompt)
            # best.safetensors is the one to use; among several runs the newest
            rank = (p.name == "best.safetensors", p.stat().st_mtime)
            if key not in found or rank > found[key][0]:
                found[key] = (rank, p)
    return {k: v[1] for k, v in found.items()}


def find_mapper(name: str | Path, folders=None, generator=None) -> Path:
    """A mapper file from a path, a prompt of a trained mapper in `folders`, or an official name
    (afro, mohawk, ... resolved through the weight registry as `mapper-<name>`). Unknown: InputError listing
    what is available."""
    p = Path(name)
    if p.is_file():
        return p
    if p.is_dir() and (p / "best.safetensors").is_file():  # a train-mapper run folder
        return p / "best.safetensors"
    key = normalize_name(str(name))
    trained = trained_mappers(folders, generator)
    if key in trained:
        return trained[key]
    short = [k for k in trained if f"_{key}_" in f"_{k}_"]  # 'mohawk' -> 'a_face_with_a_mohawk'
    if len(short) == 1:
        return trained[short[0]]
    if len(short) > 1:
        raise InputError(f"{str(name)!r} matches several trained mappers ({', '.join(sorted(short))}); "
                         "give the full prompt or the file")
    official_fits = generator is None or (generator.num_ws == 18 and generator.config.style_dim == 512)
    if key in OFFICIAL_MAPPERS and official_fits:
        return _resolve_official(key)
    if p.suffix in (".pt", ".safetensors") or len(p.parts) > 1:
        raise InputError(f"mapper file {p} does not exist")
    avail = ([f"{k} (official)" for k in sorted(OFFICIAL_MAPPERS)] if official_fits else []) + \
        [f"{k.replace('_', ' ')} (trained)" for k in sorted(trained)]
    why = "" if official_fits else " (the official mappers are for FFHQ 1024, not this generator)"
    raise InputError(f"no mapper for {str(name)!r}{why}; available: {', '.join(avail) or 'none'} "
                     "(or pass a mapper file, or train one with styleclip train-mapper)")


def _resolve_official(name: str) -> Path:
    from styleclip.store import registry as pretrained

    try:
        return pretrained.resolve(f"mapper-{name}")
    except WeightsMissingError:
        if f"mapper-{name}" in getattr(pretrained, "REGISTRY", {}):
            raise
    for d in pretrained.search_dirs():  # registry entry not there yet: look for the official file name
        for cand in (d / f"{name}.pt", d / "mappers" / f"{name}.pt"):
            if cand.is_file():
                return cand
    where = ", ".join(str(d) for d in pretrained.search_dirs())
    raise WeightsMissingError(f"official mapper '{name}' ({name}.pt) is not present (looked in: {where}); "
                              "download it from the StyleCLIP repository's mapper links and put it there")


def _peek_info(path: Path) -> dict | None:
    """The info header of one of our mapper files (no tensors read); None for anything else."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT_TAG:
            return None
        return json.loads(meta["info"])
    except Exception:  # unreadable files are simply not candidates
        return None


# ---- inference -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MapperConfig:
    """mapper: a LevelsMapper, a MapperFile, or a path / prompt / official name (see `find_mapper`).
    Edit: w_hat = w + residual_scale * Prompt.strength * M(w) (SPEC 2.1: 0.1)."""

    mapper: Any = None
    residual_scale: float = 0.1
    batch_size: int = 4
    noise_mode: str = "const"
    metrics: bool = True  # render the source too and report CLIP / identity similarity
    auto: bool = False  # pick the strength per face (auto_strength), judged along the prompt's image direction
    auto_strength: AutoStrengthConfig = field(default_factory=AutoStrengthConfig)
    gain_fraction: float = 0.6  # auto: target gain = this x how far matching faces lie from others


@register_engine("mapper")
class MapperEditor:
    """Applies a trained latent mapper to W+ latents: one forward pass, no optimisation."""

    name = "mapper"

    def __init__(self, generator, clip=None, identity=None, *, config: MapperConfig = MapperConfig()):
        self.generator, self.clip, self.identity, self.config = generator, clip, identity, config
        m = config.mapper
        if m is None:
            raise InputError("the mapper engine needs a mapper: a file, a trained prompt or an official name")
        if isinstance(m, (str, Path)):
            m = load_mapper(find_mapper(m, generator=generator))
        if isinstance(m, MapperFile):
            self.info, m = m.info, m.mapper
        else:
            self.info = {}
        if not isinstance(m, LevelsMapper):
            raise TypeError(f"config.mapper must be a LevelsMapper, MapperFile or path, got {type(m).__name__}")
        check_fits_generator(m, self.info, generator, "mapper")
        dev = generator.w_avg.device
        self.mapper = m.to(dev).eval().requires_grad_(False)

    @classmethod
    def from_file(cls, path_or_name: str | Path, generator, clip=None, identity=None, *, folders=None,
                  **config_kwargs) -> "MapperEditor":
        """`MapperEditor.from_file("mohawk", g, clip)`: a path, a trained prompt or an official name."""
        mf = load_mapper(find_mapper(path_or_name, folders, generator))
        cfg = MapperConfig(mapper=mf, **config_kwargs)
        if "residual_scale" not in config_kwargs and "residual_scale" in mf.info:
            cfg = MapperConfig(**{**cfg.__dict__, "residual_scale": float(mf.info["residual_scale"])})
        return cls(generator, clip, identity, config=cfg)

    @property
    def prompt(self) -> str | None:
        return self.info.get("prompt")

    @torch.no_grad()
    def edit_latent(self, w_plus: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """w_hat = w + residual_scale * strength * M(w) for w_plus [N,num_ws,D]."""
        w = w_plus.to(self.generator.w_avg.device, torch.float32)
        return w + self.config.residual_scale * strength * self.mapper(w)

    @torch.no_grad()
    def edit(self, latent: Latent, prompt: Prompt | None = None, *, progress: ProgressFn | None = None) -> EditResult:
        g, cfg = self.generator, self.config
        if latent.styles is not None:
            raise InputError("a mapper edits W+ latents; this latent is in S space (a global or --space styles "
                             "edit); edit it with --engine global or optimize --space styles")
        w_all = latent.w_plus
        if w_all.shape[1:] != (g.num_ws, g.config.style_dim):
            raise InputError(f"latent must be [N,{g.num_ws},{g.config.style_dim}], got {list(w_all.shape)}")
        strength = prompt.strength if prompt is not None else 1.0
        text = prompt.target if prompt is not None else self.prompt
        if prompt is not None and self.prompt and \
                f"_{normalize_name(prompt.target)}_" not in f"_{normalize_name(self.prompt)}_":
            warnings.warn(f"this mapper was trained for {self.prompt!r}, not {prompt.target!r}; "
                          "metrics use the given prompt", stacklevel=2)
        if prompt is not None and prompt.image is not None:
            raise InputError("a per-prompt mapper edits toward the text it was trained for; use the universal "
                             "mapper for a target image")
        n = w_all.shape[0]
        imgs, srcs, w_hats, before, after, ident, chosen, reached = [], [], [], [], [], [], [], []
        text_emb = self.clip.encode_text(text) if (cfg.metrics and self.clip is not None and text) else None
        auto = self._auto_target(text) if cfg.auto else None
        for i in range(0, n, max(1, cfg.batch_size)):
            w = w_all[i:i + cfg.batch_size].to(g.w_avg.device, torch.float32)
            if auto is not None:
                residual = self.config.residual_scale * self.mapper(w)
                src = g.synthesis(w, noise_mode=cfg.noise_mode)
                s, img, info = pick_strengths(
                    lambda s: g.synthesis(w + s.view(-1, 1, 1) * residual, noise_mode=cfg.noise_mode),
                    clip=self.clip, identity=self.identity, source_img=src, direction=auto[0],
                    target_gain=auto[1], config=cfg.auto_strength, base=strength)
                w_hat = w + s.view(-1, 1, 1) * residual
                chosen += s.tolist()
                reached += info.get("gain_reached", [])
            else:
                w_hat = self.edit_latent(w, strength)
                img = g.synthesis(w_hat, noise_mode=cfg.noise_mode)
            imgs.append(img)
            w_hats.append(w_hat)
            if cfg.metrics:
                src = g.synthesis(w, noise_mode=cfg.noise_mode)
                srcs.append(src)
                if text_emb is not None:
                    before += (1 - clip_loss(self.clip.encode_image(src), text_emb)).tolist()
                    after += (1 - clip_loss(self.clip.encode_image(img), text_emb)).tolist()
                if self.identity is not None:
                    ident += (self.identity.embed(img) * self.identity.embed(src)).sum(-1).tolist()
            report(progress, min(i + cfg.batch_size, n), n)
        metrics: dict = {"residual_scale": cfg.residual_scale * strength}
        if chosen:
            metrics.update(strength=chosen, **({"gain_reached": reached} if reached else {}))
        if before:
            metrics.update(clip_before=before, clip_after=after)
        if ident:
            metrics["identity_similarity"] = ident
        return EditResult(image=torch.cat(imgs), latent=torch.cat(w_hats), engine=self.name, metrics=metrics,
                          source_image=torch.cat(srcs) if srcs else None)


    def _auto_target(self, text: str | None) -> tuple[torch.Tensor, float]:
        """(unit image-side direction, target gain) of the mapper's prompt for auto strength."""
        from styleclip.encoders import targets as idir

        if self.clip is None or not text:
            raise InputError("auto strength needs a CLIP model and a prompt")
        d, raw = idir.prompt_direction(self.clip, idir.face_bank(self.generator, self.clip), text)
        return d, float(raw @ d) * self.config.gain_fraction


__all__ = ["MapperEditor", "MapperConfig", "MapperFile", "load_mapper", "save_mapper", "find_mapper",
           "trained_mappers", "mapper_from_state_dict", "generator_fingerprint", "OFFICIAL_MAPPERS",
           "normalize_name"]
