"""Read published generator checkpoints into our layout, without running code from them.

Formats:
- rosinality `.pt` (`{"g_ema", "latent_avg", ...}` or a bare state dict; also `decoder.*` inside
  StyleCLIP mapper / e4e checkpoints), read with `torch.load(weights_only=True)`;
- NVIDIA stylegan2-ada-pytorch / stylegan3-repo StyleGAN2 `.pkl` (`G_ema`), read with a restricted
  unpickler that resolves an allow-list of globals and never executes the embedded module source;
  StyleGAN3 `.pkl` (T and R) through the same unpickler, mapped by `styleclip.store.nvidia_sg3`;
- our own `.safetensors` (state dict + the config as JSON metadata), which conversions are cached as.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from styleclip.util.checks import file_tensors, finite_tensors, reading
from styleclip.errors import CheckpointError, one_line, summarize
from styleclip.util.outputs import write_atomic
from styleclip.nets.ops import make_kernel
from styleclip.nets.stylegan2 import Generator, GeneratorConfig

FORMAT_TAG = "styleclip-generator"


# ------------------------------------------------------------------------------------------------
# entry points
def read_generator(path: str | Path) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """Read any supported checkpoint -> (config, state dict in our layout). Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with reading(path, "checkpoint"):
            kind = sniff_format(path)
            if kind == "safetensors":
                return _read_safetensors(path)
            if kind == "pickle":
                return _read_nvidia_pkl(path)
            return _read_torch(path)
    except CheckpointError as e:
        msg = str(e)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def build_generator(config: GeneratorConfig, state_dict: dict[str, torch.Tensor], *,
                    source: str = "checkpoint") -> Generator:
    """Instantiate `Generator(config)` and load the state dict strictly, with a readable error; weights must be
    finite. A StyleGAN3 config builds the StyleGAN3 generator."""
    if not isinstance(config, GeneratorConfig):
        from styleclip.store.nvidia_sg3 import build_stylegan3

        return build_stylegan3(config, state_dict, source=source)
    check_config(config, source)
    return load_strict(Generator(config), state_dict, source=source)


def load_strict(g: torch.nn.Module, state_dict: dict[str, torch.Tensor], *, source: str) -> torch.nn.Module:
    """Load a generator's weights strictly (finite tensors, the same names and shapes), frozen in eval mode."""
    file_tensors(state_dict, source)
    check_keys({k: tuple(v.shape) for k, v in g.state_dict().items()}, state_dict, source=source)
    g.load_state_dict(state_dict, strict=True)
    return g.eval().requires_grad_(False)


def check_keys(expected: dict[str, tuple], state_dict: dict[str, torch.Tensor], *, source: str) -> None:
    """Raise CheckpointError naming missing / unexpected keys and shape mismatches (strict loading)."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} {list(state_dict[k].shape)} (expected {list(s)})" for k, s in expected.items()
             if k in state_dict and tuple(state_dict[k].shape) != s]
    problems = []
    if missing:
        problems.append(f"missing keys {summarize(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {summarize(unexpected)}")
    if wrong:
        problems.append(f"shape mismatch {summarize(wrong)}")
    if problems:
        raise CheckpointError(f"{source}: does not match the architecture: " + "; ".join(problems))


def save_generator(generator: Generator, path: str | Path) -> Path:
    """Write our `.safetensors` form (state dict + config metadata), atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in generator.state_dict().items()}
    finite_tensors(tensors, f"generator for {path}")
    meta = {"format": FORMAT_TAG, "config": json.dumps(generator.config.to_dict())}
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


MAX_SIZE, MAX_STYLE_DIM, MAX_MLP, MAX_CHANNELS = 4096, 2048, 32, 4096  # beyond any published StyleGAN2


def check_config(config: GeneratorConfig, source: str) -> None:
    """Refuse architectures no published generator has (a crafted config must not allocate terabytes)."""
    fields = {"size": (config.size, MAX_SIZE), "style_dim": (config.style_dim, MAX_STYLE_DIM),
              "n_mlp": (config.n_mlp, MAX_MLP), "channel_max": (config.channel_max, MAX_CHANNELS),
              "channel_multiplier": (config.channel_multiplier, 16), "channel_base": (config.channel_base, 1 << 20)}
    for name, (value, hi) in fields.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
            raise CheckpointError(f"{source}: generator {name} {value!r} is outside 1..{hi}")
    if config.conv_clamp is not None and not (isinstance(config.conv_clamp, (int, float))
                                              and math.isfinite(config.conv_clamp) and config.conv_clamp > 0):
        raise CheckpointError(f"{source}: conv_clamp {config.conv_clamp!r} must be a positive number")
    if not (isinstance(config.lr_mlp, (int, float)) and math.isfinite(config.lr_mlp)):
        raise CheckpointError(f"{source}: lr_mlp {config.lr_mlp!r} must be a finite number")


def sniff_format(path: Path) -> str:
    """'safetensors', 'torch' (zip or legacy torch.save) or 'pickle' (plain pickle, NVIDIA), by content."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 8:
        raise CheckpointError(f"{path}: file is too small to be a checkpoint ({len(head)} bytes)")
    if head[:4] == b"PK\x03\x04":
        return "torch"
    n = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and 0 < n < 100_000_000:
        return "safetensors"
    if head[:1] == b"\x80":
        # torch's legacy format also starts with a pickle (of a magic number); NVIDIA pkls pickle a dict
        return "torch" if head[2:3] == b"\x8a" else "pickle"
    raise CheckpointError(f"{path}: not a checkpoint (unknown file format; expected .pt, .pkl or .safetensors)")


# ------------------------------------------------------------------------------------------------
# safetensors (ours)
def load_safetensors_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a .safetensors file; any failure becomes one CheckpointError line."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file (truncated or corrupt): {one_line(e)}") from None


def _read_safetensors(path: Path):
    state, meta = load_safetensors_file(path)
    if meta.get("format") == FORMAT_TAG:
        raw = json.loads(meta["config"])
        if not isinstance(raw, dict):
            raise CheckpointError("the config metadata is not a JSON object")
        if raw.get("architecture") == "stylegan3":  # a converted StyleGAN3 pickle
            from styleclip.nets.stylegan3 import StyleGAN3Config
            from styleclip.store.nvidia_sg3 import check_sg3_config

            config = StyleGAN3Config.from_dict(raw)
            check_sg3_config(config, str(path))
            return config, state
        config = GeneratorConfig.from_dict(raw)
        check_config(config, str(path))
        return config, state
    return _from_rosinality(state, None)


# ------------------------------------------------------------------------------------------------
# rosinality .pt
_KERNEL_KEY = re.compile(r"\.(blur|upsample)\.kernel$")


def load_torch_file(path: Path, *, what: str = "checkpoint"):
    """torch.load(weights_only=True) (argparse.Namespace allowed, as training checkpoints hold one); any failure
    becomes one CheckpointError line naming the file."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError,
            AttributeError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable {what} (truncated, corrupt or not a weights file): "
                              f"{one_line(e)}") from None


def _read_torch(path: Path):
    ckpt = load_torch_file(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(ckpt).__name__}")
    latent_avg = ckpt.get("latent_avg")
    if "g_ema" in ckpt:
        state = ckpt["g_ema"]
    elif isinstance(ckpt.get("state_dict"), dict) and any(k.startswith("decoder.") for k in ckpt["state_dict"]):
        # StyleCLIP mapper / e4e / pSp checkpoints embed the generator as `decoder.*`
        state = {k[len("decoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("decoder.")}
    elif any(k.startswith("style.") for k in ckpt):
        state = ckpt
    else:
        raise CheckpointError(f"{path}: no generator weights found (keys: {summarize(list(ckpt))}); "
                              "expected rosinality 'g_ema' or a generator state dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'g_ema' is not a state dict")
    if isinstance(latent_avg, torch.Tensor) and latent_avg.ndim == 2:
        latent_avg = latent_avg[0]  # e4e stores it repeated per W+ row
    return _from_rosinality(state, latent_avg if isinstance(latent_avg, torch.Tensor) else None)


def _from_rosinality(state: dict, latent_avg: torch.Tensor | None):
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    file_tensors(state, "checkpoint")
    config = infer_config(state)
    check_config(config, "checkpoint")
    out = {}
    for k, v in state.items():
        if _KERNEL_KEY.search(k):
            expected = make_kernel(config.blur_kernel) * 4
            if v.shape != expected.shape or not torch.allclose(v.float(), expected, atol=1e-6):
                raise CheckpointError(f"{k} is not the standard [1,3,3,1] FIR kernel; unsupported variant")
            continue  # fixed filters are rebuilt from the config
        out[k] = v.float()
    noise_keys = [f"noises.noise_{i}" for i in range(config.num_noises)]
    if not any(k in out for k in noise_keys):
        warnings.warn("checkpoint has no noise buffers; using seeded random ones (fine detail will differ "
                      "from the original model's)", stacklevel=3)
        g = torch.Generator().manual_seed(0)
        for i, k in enumerate(noise_keys):
            r = 2 ** ((i + 5) // 2)
            out[k] = torch.randn(1, 1, r, r, generator=g)
    if "w_avg" not in out:
        if latent_avg is not None:
            out["w_avg"] = latent_avg.float().reshape(-1)
        else:
            out["w_avg"] = _mean_latent(config, out)
    return config, out


def _mean_latent(config: GeneratorConfig, state: dict) -> torch.Tensor:
    """For checkpoints without latent_avg: mean of mapping(z) over 4096 seeded samples (StyleCLIP's count)."""
    from styleclip.nets.stylegan2 import EqualLinear, PixelNorm

    layers = [PixelNorm()] + [EqualLinear(config.style_dim, config.style_dim, lr_mul=config.lr_mlp, activation=True)
                              for _ in range(config.n_mlp)]
    mapping = torch.nn.Sequential(*layers)
    mapping.load_state_dict({k[len("style."):]: v for k, v in state.items() if k.startswith("style.")})
    z = torch.randn(4096, config.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return mapping(z).mean(0)


def infer_config(state: dict) -> GeneratorConfig:
    """Derive size, style_dim, n_mlp and the channel table from a rosinality-layout state dict."""
    try:
        n_mlp = len([k for k in state if re.fullmatch(r"style\.\d+\.weight", k)])
        style_dim = state["style.1.weight"].shape[1]
        n_rgb = len([k for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
        size = 2 ** (n_rgb + 2)
        chans = {4: state["input.input"].shape[1]}
        for i in range(n_rgb):
            chans[2 ** (i + 3)] = state[f"convs.{2 * i}.conv.weight"].shape[1]
    except KeyError as e:
        raise CheckpointError(f"not a StyleGAN2 generator state dict (missing {e.args[0]})") from None
    cmax = max(chans.values())
    candidates = [(2, 16384), (1, 16384)]
    below = [r for r in sorted(chans) if chans[r] < cmax]
    if below:
        candidates.append((1, chans[below[0]] * below[0]))
    else:
        candidates.append((1, cmax * size))
    for mult, base in candidates:
        if all(min(cmax, base * mult // r) == c for r, c in chans.items()):
            return GeneratorConfig(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=mult,
                                   channel_base=base, channel_max=cmax)
    raise CheckpointError(f"unsupported channel table {chans}")


# ------------------------------------------------------------------------------------------------
# NVIDIA .pkl through a restricted unpickler
class PersistentRecord:
    """What NVIDIA's `_reconstruct_persistent_obj(meta)` would have built, kept as data (never executed)."""

    def __init__(self, meta):
        self.meta = meta if isinstance(meta, dict) else {}

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name", ""))

    @property
    def state(self) -> dict:
        state = self.meta.get("state")
        return state if isinstance(state, dict) else {}


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _load_storage_bytes(b: bytes):
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _allowed_globals() -> dict[tuple[str, str], object]:
    import collections

    import numpy as np
    import torch._utils

    allowed = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentRecord,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("dnnlib", "EasyDict"): EasyDict,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
        ("torch", "Size"): torch.Size,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "scalar")] = _np_scalar
        allowed[(mod, "_reconstruct")] = _np_reconstruct
    for name in ("float32", "float16", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
        allowed[("torch", name)] = getattr(torch, name)
    return allowed


def _np_scalar(dtype, data=None):
    import numpy as np

    return np.frombuffer(data, dtype=dtype)[0].copy() if data is not None else dtype.type()


def _np_reconstruct(cls, shape, dtype):
    import numpy as np

    if cls is not np.ndarray:
        raise pickle.UnpicklingError("refusing numpy subclass")
    return np.ndarray((0,), dtype="b")  # shape, dtype and data come from __setstate__ (data from the file)


class _BoundedReader:
    """A file for the unpickler whose reads never ask for more than the bytes left: a length field claiming
    2^60 bytes must not make Python allocate them."""

    def __init__(self, f):
        self._f = f
        f.seek(0, io.SEEK_END)
        self._size = f.tell()
        f.seek(0)

    def read(self, n=-1):
        left = self._size - self._f.tell()
        return self._f.read(left if n is None or n < 0 else min(n, left))

    def readinto(self, buf):
        view = memoryview(buf)
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def readline(self):
        return self._f.readline(1 << 20)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals; everything else is an error (no code runs from the file).
    Reads are bounded by the file's size."""

    def __init__(self, file):
        super().__init__(_BoundedReader(file) if hasattr(file, "seek") else file)
        self._allowed = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent id")


def _read_nvidia_pkl(path: Path):
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, RuntimeError, IndexError,
            KeyError, OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable or unsafe pickle: {one_line(e)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), PersistentRecord):
        if isinstance(data, tuple):
            raise CheckpointError(f"{path}: TensorFlow StyleGAN2 .pkl files are not supported; use the "
                                  "stylegan2-ada-pytorch .pkl or the rosinality .pt of this model")
        raise CheckpointError(f"{path}: expected an NVIDIA network pickle with 'G_ema'")
    g = data["G_ema"]
    from styleclip.store import nvidia_sg3  # (NVIDIA stores the bare class name `Generator` for SG2 and SG3)

    if nvidia_sg3.is_stylegan3(g):
        return nvidia_sg3.read_nvidia_sg3(g, path)
    nv_state = flatten_record(g)
    file_tensors(nv_state, str(path))
    kwargs = g.state.get("_init_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path}: G_ema's _init_kwargs is a {type(kwargs).__name__}, not a dict")
    config = nvidia_config(kwargs, nv_state)
    check_config(config, str(path))
    return config, nvidia_to_ours(nv_state, config)


MAX_MODULE_DEPTH = 32  # NVIDIA's G_ema nests 4 deep


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{where} is a {type(value).__name__}, expected a dict")
    return value


def flatten_record(record: PersistentRecord, prefix: str = "", _seen: tuple = ()) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of a record tree, named like NVIDIA's state_dict(); a tree deeper than
    MAX_MODULE_DEPTH or containing itself is refused."""
    if len(_seen) > MAX_MODULE_DEPTH or any(r is record for r in _seen):
        raise CheckpointError(f"module tree at {(prefix or 'G_ema')[:40]} is cyclic or deeper than {MAX_MODULE_DEPTH}")
    _seen = _seen + (record,)
    st = record.state
    out = {}
    for k, v in _mapping(st.get("_parameters"), f"{prefix}_parameters").items():
        if v is not None:
            out[prefix + str(k)] = v.detach() if isinstance(v, torch.Tensor) else v
    skip = st.get("_non_persistent_buffers_set") or ()
    skip = set(skip) if isinstance(skip, (set, frozenset, list, tuple)) else set()
    for k, v in _mapping(st.get("_buffers"), f"{prefix}_buffers").items():
        if v is not None and k not in skip:
            out[prefix + str(k)] = v
    for k, child in _mapping(st.get("_modules"), f"{prefix}_modules").items():
        if isinstance(child, PersistentRecord):
            out.update(flatten_record(child, f"{prefix}{k}.", _seen))
        elif child is not None:
            raise CheckpointError(f"unexpected module object at {prefix}{k}")
    return out


def nvidia_config(init_kwargs: dict, nv_state: dict) -> GeneratorConfig:
    """GeneratorConfig from G_ema's constructor kwargs (ADA repo nests synthesis_kwargs; stylegan3 repo is flat)."""
    kw = dict(init_kwargs)
    syn = dict(kw.get("synthesis_kwargs") or {})
    for key in ("channel_base", "channel_max", "conv_clamp", "architecture", "num_fp16_res"):
        if key in kw and key not in syn:
            syn[key] = kw[key]
    if int(kw.get("c_dim", 0) or 0) > 0:
        raise CheckpointError("class-conditional generators (c_dim > 0) are not supported")
    if syn.get("architecture", "skip") != "skip":
        raise CheckpointError(f"generator architecture {syn['architecture']!r} is not supported (only 'skip')")
    z_dim, w_dim = int(kw.get("z_dim", 512)), int(kw.get("w_dim", 512))
    if z_dim != w_dim:
        raise CheckpointError(f"z_dim {z_dim} != w_dim {w_dim} is not supported")
    size = int(kw.get("img_resolution", 0))
    mapping = dict(kw.get("mapping_kwargs") or {})
    n_mlp = int(mapping.get("num_layers", len([k for k in nv_state if re.fullmatch(r"mapping\.fc\d+\.weight", k)])))
    nv_base = int(syn.get("channel_base", 32768))
    mult, base = (nv_base // 16384, 16384) if nv_base in (16384, 32768) else (1, nv_base)
    clamp = syn.get("conv_clamp")
    try:
        return GeneratorConfig(size=size, style_dim=w_dim, n_mlp=n_mlp, channel_multiplier=mult, channel_base=base,
                               channel_max=int(syn.get("channel_max", 512)),
                               lr_mlp=float(mapping.get("lr_multiplier", 0.01)),
                               conv_clamp=None if clamp is None else float(clamp))
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def nvidia_to_ours(nv: dict[str, torch.Tensor], config: GeneratorConfig) -> dict[str, torch.Tensor]:
    """Map NVIDIA G_ema names onto ours (WEIGHTS.md 2.4); no spatial flips, kernels dropped."""
    out = {}

    def take(key):
        if not isinstance(nv.get(key), torch.Tensor):
            raise CheckpointError(f"NVIDIA pickle lacks the tensor {key}")
        return nv[key].float()

    for i in range(config.n_mlp):
        out[f"style.{i + 1}.weight"] = take(f"mapping.fc{i}.weight")
        out[f"style.{i + 1}.bias"] = take(f"mapping.fc{i}.bias")
    out["w_avg"] = take("mapping.w_avg")
    out["input.input"] = take("synthesis.b4.const").unsqueeze(0)

    def layer(src, dst, noise_index):
        out[f"{dst}.conv.weight"] = take(f"{src}.weight").unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = take(f"{src}.affine.weight")
        out[f"{dst}.conv.modulation.bias"] = take(f"{src}.affine.bias")
        out[f"{dst}.noise.weight"] = take(f"{src}.noise_strength").reshape(1)
        out[f"{dst}.activate.bias"] = take(f"{src}.bias")
        r = 2 ** ((noise_index + 5) // 2)
        out[f"noises.noise_{noise_index}"] = take(f"{src}.noise_const").reshape(1, 1, r, r)

    def torgb(src, dst):
        out[f"{dst}.conv.weight"] = take(f"{src}.weight").unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = take(f"{src}.affine.weight")
        out[f"{dst}.conv.modulation.bias"] = take(f"{src}.affine.bias")
        out[f"{dst}.bias"] = take(f"{src}.bias").reshape(1, 3, 1, 1)

    layer("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for i in range(config.log_size - 2):
        res = 2 ** (i + 3)
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * i}", 2 * i + 1)
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * i + 1}", 2 * i + 2)
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{i}")
    return out


# ------------------------------------------------------------------------------------------------


__all__ = ["read_generator", "build_generator", "save_generator", "infer_config", "sniff_format",
           "RestrictedUnpickler", "nvidia_to_ours", "nvidia_config", "check_keys"]
