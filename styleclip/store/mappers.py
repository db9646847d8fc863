"""Mapper files and where they are found: per-prompt latent mappers (official `.pt` and ours) and universal
mappers; lookup by path, run folder, prompt or official name.

Official checkpoints (SPEC 2.5, WEIGHTS 6): `torch.load`-able dicts {state_dict: mapper.* + decoder.*, opts};
the embedded generator (`decoder.*`) is ignored here and the levels are inferred from which
`mapper.*_mapping` keys exist (the stored opts are unreliable, WEIGHTS 10.13).
Ours: `.safetensors` with the LevelsMapper (or UniversalMapper) state dict and JSON metadata (prompt, levels,
the generator it was trained for with its fingerprint, training settings, final losses).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from styleclip.errors import CheckpointError, InputError, WeightsMissingError, one_line, summarize
from styleclip.nets.mapper import LEVELS, MODULE_NAMES, LevelsMapper
from styleclip.nets.universal_mapper import UniversalMapper
from styleclip.store.cache import cache_folder
from styleclip.util.checks import file_tensors, finite_tensors, reading
from styleclip.util.fingerprint import generator_fingerprint
from styleclip.util.names import normalize_name
from styleclip.util.outputs import write_atomic

FORMAT_TAG = "styleclip-mapper"
UNIVERSAL_FORMAT_TAG = "styleclip-universal-mapper"
UNIVERSAL = "universal"  # the name that finds the newest universal mapper for a generator
TOY_MAPPERS = Path(__file__).resolve().parent.parent / "assets" / "toy_faces" / "mappers"

# The 14 published mappers (WEIGHTS.md 6): name -> levels. All for StyleGAN2 FFHQ 1024 (18 W+ rows).
OFFICIAL_MAPPERS: dict[str, tuple[str, ...]] = {
    **{n: ("coarse", "medium") for n in ("afro", "angry", "bobcut", "bowlcut", "curly_hair", "mohawk",
                                          "surprised")},
    **{n: LEVELS for n in ("beyonce", "depp", "hilary_clinton", "purple_hair", "taylor_swift", "trump",
                           "zuckerberg")},
}


@dataclass
class MapperFile:
    """A loaded mapper and what is known about it (`info`: prompt, levels, generator, training, losses)."""

    mapper: LevelsMapper
    info: dict
    path: Path | None = None

    @property
    def prompt(self) -> str | None:
        return self.info.get("prompt")


# ---- per-prompt mapper files ------------------------------------------------------------------------------
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


# ---- which generator a file was trained for ------------------------------------------------------------------
def _legacy_fingerprint(generator) -> str:
    """What mapper files written before the one fingerprint rule record: sha256 of the whole state dict. Only
    compared with a recorded value, never written."""
    h = hashlib.sha256()
    for k, v in sorted(generator.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class _Fingerprints:
    """The generator's fingerprint (and, only when a file records another value, the legacy one), each
    computed at most once."""

    def __init__(self, generator):
        self.generator, self._current, self._legacy = generator, None, None

    def matches(self, recorded: str | None) -> bool:
        """True when nothing is recorded or the record is this generator's (current or legacy rule)."""
        if not recorded:
            return True
        self._current = self._current or generator_fingerprint(self.generator)
        if recorded == self._current:
            return True
        self._legacy = self._legacy or _legacy_fingerprint(self.generator)
        return recorded == self._legacy


def recorded_fingerprint(info: dict | None) -> str | None:
    return ((info or {}).get("generator") or {}).get("fingerprint")


def trained_for(info: dict | None, generator) -> bool:
    """Whether a mapper file's info records this generator (or no generator at all)."""
    return _Fingerprints(generator).matches(recorded_fingerprint(info))


def warn_if_other_generator(info: dict | None, generator, what: str) -> None:
    """A recorded fingerprint of another generator only warns (the edits may be meaningless)."""
    if not trained_for(info, generator):
        warnings.warn(f"this {what} was trained for a different generator (fingerprint mismatch); "
                      "edits may be meaningless", stacklevel=3)


# ---- lookup ----------------------------------------------------------------------------------------------------
def default_mapper_dirs() -> list[Path]:
    """Where trained mappers are looked for: ./mappers (train-mapper's default output), <cache>/mappers and
    the mappers shipped for the embedded toy-faces model."""
    return [Path("mappers"), cache_folder("mappers"), TOY_MAPPERS]


def trained_mappers(folders=None, generator=None) -> dict[str, Path]:
    """Our mapper files under `folders` (recursively): normalised prompt -> path (newest file wins). With a
    `generator`, only mappers trained for it (same fingerprint where the file records one)."""
    found: dict[str, tuple[float, Path]] = {}
    fingerprints = _Fingerprints(generator) if generator is not None else None  # computed only when needed
    for folder in (default_mapper_dirs() if folders is None else [Path(f) for f in folders]):
        if not folder.is_dir():
            continue
        for p in folder.rglob("*.safetensors"):
            info = _peek_info(p)
            prompt = info.get("prompt") if info else None
            if prompt is None:
                continue
            if fingerprints is not None and not fingerprints.matches(recorded_fingerprint(info)):
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


# ---- universal mapper files ------------------------------------------------------------------------------
def save_universal_mapper(mapper: UniversalMapper, path: str | Path, *, info: dict | None = None,
                          half: bool = False) -> Path:
    """Write a universal mapper file atomically; `half` stores fp16 weights (the shipped file)."""
    from safetensors.torch import save_file

    path = Path(path)
    info = {**(info or {}), "architecture": mapper.architecture()}
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to(dtype).contiguous().cpu() for k, v in mapper.state_dict().items()}
    tmp = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp), metadata={"format": UNIVERSAL_FORMAT_TAG, "info": json.dumps(info)})
    tmp.replace(path)
    return path


def is_universal_file(path: str | Path) -> bool:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == UNIVERSAL_FORMAT_TAG
    except Exception:  # anything unreadable is simply not one
        return False


def load_universal_mapper(path: str | Path) -> tuple[UniversalMapper, dict]:
    """(mapper in eval mode, info) from a universal mapper file; strict keys; one-line CheckpointError."""
    from styleclip.store.readers import load_safetensors_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such universal mapper file")
    state, meta = load_safetensors_file(path)
    if meta.get("format") != UNIVERSAL_FORMAT_TAG:
        raise CheckpointError(f"{path}: not a universal mapper file (format {meta.get('format')!r})")
    try:
        info = json.loads(meta["info"])
        arch = info["architecture"]
        mapper = UniversalMapper(int(arch["num_ws"]), int(arch["style_dim"]), int(arch["clip_dim"]),
                                 hidden=int(arch["hidden"]), n_layers=int(arch["n_layers"]), split=arch["split"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: broken universal mapper metadata ({one_line(e)})") from None
    try:
        mapper.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the recorded architecture ({one_line(e)})") from None
    return mapper.eval(), info


def find_universal_mapper(name: str | Path = UNIVERSAL, generator=None) -> Path:
    """A universal mapper file: a path, a run folder, or 'universal' (the newest one found for `generator`
    under ./mappers, <cache>/mappers and the shipped toy mappers)."""
    p = Path(name)
    if p.is_file():
        return p
    if p.is_dir() and (p / "universal.safetensors").is_file():
        return p / "universal.safetensors"
    if str(name) != UNIVERSAL:
        raise InputError(f"universal mapper {name} does not exist")
    fingerprints = _Fingerprints(generator) if generator is not None else None
    found = []
    for folder in default_mapper_dirs():
        if not folder.is_dir():
            continue
        for f in folder.rglob("*.safetensors"):
            if not is_universal_file(f):
                continue
            info = _peek(f)
            if fingerprints is not None and not fingerprints.matches(recorded_fingerprint(info)):
                continue
            found.append((folder == TOY_MAPPERS, -f.stat().st_mtime, f))
    if not found:
        raise InputError("no universal mapper found for this generator; train one with "
                         "`styleclip train-mapper --universal` (it lands in mappers/universal)")
    return sorted(found)[0][2]  # trained ones before the shipped one, newest first


def _peek(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("info", "{}"))


def load_mapper_for(name: str | Path, generator, folders=None) -> MapperFile:
    """The per-prompt mapper `name` (see `find_mapper`) read for `generator`; warns when its file records
    another generator."""
    mf = load_mapper(find_mapper(name, folders, generator))
    warn_if_other_generator(mf.info, generator, "mapper")
    return mf


def load_universal_mapper_for(name: str | Path, generator) -> MapperFile:
    """The universal mapper `name` (see `find_universal_mapper`) read for `generator`, as a MapperFile."""
    path = find_universal_mapper(name, generator)
    mapper, info = load_universal_mapper(path)
    warn_if_other_generator(info, generator, "universal mapper")
    return MapperFile(mapper, info, path)
