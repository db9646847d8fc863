"""Read NVIDIA StyleGAN3 pickles (configs T and R) into `styleclip.nets.stylegan3`, without NVIDIA's code.

`styleclip.store.readers` unpickles the file with its restricted unpickler (persistent objects become plain
records, nothing is executed); this module recognises a StyleGAN3 `G_ema` (NVIDIA stores the bare class
name `Generator` for StyleGAN2 and StyleGAN3 alike: the synthesis network's `input` module, the Fourier
features, tells them apart), derives the config from the constructor kwargs, checks every layer's stored
geometry (sizes, sampling rates, up/down factors, filter taps, padding, clamp) against the one the config
implies, and maps the parameters and buffers (freqs, phases, transform, filters, magnitude_ema) onto our
names; `build_stylegan3` then loads them strictly.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from styleclip.errors import CheckpointError, summarize
from styleclip.nets.stylegan3 import StyleGAN3Config, StyleGAN3Generator
from styleclip.store.readers import PersistentRecord, flatten_record, load_strict
from styleclip.util.checks import file_tensors

# NVIDIA's SynthesisNetwork / SynthesisLayer defaults, used where a pickle's kwargs leave them out
_SYNTHESIS_DEFAULTS = dict(channel_base=32768, channel_max=512, num_layers=14, num_critical=2, first_cutoff=2,
                           first_stopband=2 ** 2.1, last_stopband_rel=2 ** 0.3, margin_size=10, output_scale=0.25,
                           conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False,
                           conv_clamp=256)
# kwargs that change nothing in an fp32 forward pass (training-time or fp16 settings)
_IGNORED_KWARGS = {"num_fp16_res", "magnitude_ema_beta"}
MAX_SIZE, MAX_STYLE_DIM, MAX_MLP, MAX_CHANNELS, MAX_LAYERS = 4096, 2048, 32, 4096, 64


def _modules(record: PersistentRecord) -> dict:
    mods = record.state.get("_modules")
    return mods if isinstance(mods, dict) else {}


def is_stylegan3(g: PersistentRecord) -> bool:
    """True when G_ema is a StyleGAN3 generator: its synthesis network starts with Fourier features (`input`)."""
    syn = _modules(g).get("synthesis")
    return isinstance(syn, PersistentRecord) and isinstance(_modules(syn).get("input"), PersistentRecord)


def read_nvidia_sg3(g: PersistentRecord, source: str | Path) -> tuple[StyleGAN3Config, dict[str, torch.Tensor]]:
    """(config, state dict in our layout) of a StyleGAN3 `G_ema` record; CheckpointError on any mismatch."""
    source = str(source)
    kwargs = g.state.get("_init_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{source}: G_ema's _init_kwargs is a {type(kwargs).__name__}, not a dict")
    nv = flatten_record(g)
    file_tensors(nv, source)
    config = config_from_kwargs(kwargs, nv, source)
    syn = _modules(g)["synthesis"]
    check_geometry(config, syn, source)
    return config, nvidia_sg3_to_ours(nv, config, source)


def config_from_kwargs(kwargs: dict, nv: dict, source: str) -> StyleGAN3Config:
    """StyleGAN3Config from G_ema's constructor kwargs (synthesis kwargs are flat in the stylegan3 repo)."""
    kw = dict(kwargs)
    kw.update(kw.pop("synthesis_kwargs", None) or {})
    if int(kw.get("c_dim", 0) or 0) > 0:
        raise CheckpointError(f"{source}: class-conditional generators (c_dim > 0) are not supported")
    z_dim, w_dim = int(kw.get("z_dim", 512)), int(kw.get("w_dim", 512))
    if z_dim != w_dim:
        raise CheckpointError(f"{source}: z_dim {z_dim} != w_dim {w_dim} is not supported")
    mapping = dict(kw.get("mapping_kwargs") or {})
    n_fc = len([k for k in nv if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
    known = set(_SYNTHESIS_DEFAULTS) | _IGNORED_KWARGS | {"z_dim", "c_dim", "w_dim", "img_resolution",
                                                          "img_channels", "mapping_kwargs"}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise CheckpointError(f"{source}: unsupported StyleGAN3 generator options {summarize(unknown)}")
    syn = {k: kw.get(k, d) for k, d in _SYNTHESIS_DEFAULTS.items()}
    clamp = syn.pop("conv_clamp")
    try:
        config = StyleGAN3Config(
            size=int(kw.get("img_resolution", 0)), style_dim=w_dim, n_mlp=int(mapping.get("num_layers", n_fc)),
            lr_mlp=float(mapping.get("lr_multiplier", 0.01)), img_channels=int(kw.get("img_channels", 3)),
            channel_base=int(syn["channel_base"]), channel_max=int(syn["channel_max"]),
            num_layers=int(syn["num_layers"]), num_critical=int(syn["num_critical"]),
            first_cutoff=float(syn["first_cutoff"]), first_stopband=float(syn["first_stopband"]),
            last_stopband_rel=float(syn["last_stopband_rel"]), margin_size=int(syn["margin_size"]),
            output_scale=float(syn["output_scale"]), conv_kernel=int(syn["conv_kernel"]),
            filter_size=int(syn["filter_size"]), lrelu_upsampling=int(syn["lrelu_upsampling"]),
            use_radial_filters=bool(syn["use_radial_filters"]), conv_clamp=None if clamp is None else float(clamp))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: bad StyleGAN3 generator options: {e}") from None
    check_sg3_config(config, source)
    return config


def check_sg3_config(config: StyleGAN3Config, source: str) -> None:
    """Refuse architectures no published generator comes near (a crafted config must not allocate terabytes)."""
    ints = {"size": (config.size, MAX_SIZE), "style_dim": (config.style_dim, MAX_STYLE_DIM),
            "n_mlp": (config.n_mlp, MAX_MLP), "channel_max": (config.channel_max, MAX_CHANNELS),
            "channel_base": (config.channel_base, 1 << 20), "num_layers": (config.num_layers, MAX_LAYERS),
            "img_channels": (config.img_channels, 4), "margin_size": (config.margin_size, 256),
            "conv_kernel": (config.conv_kernel, 7), "filter_size": (config.filter_size, 32),
            "lrelu_upsampling": (config.lrelu_upsampling, 8)}
    for name, (value, hi) in ints.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
            raise CheckpointError(f"{source}: generator {name} {value!r} is outside 1..{hi}")
    floats = {"first_cutoff": config.first_cutoff, "first_stopband": config.first_stopband,
              "last_stopband_rel": config.last_stopband_rel, "output_scale": config.output_scale,
              "lr_mlp": config.lr_mlp}
    for name, value in floats.items():
        if not (math.isfinite(value) and value > 0):
            raise CheckpointError(f"{source}: generator {name} {value!r} must be a positive number")
    if config.conv_clamp is not None and not (math.isfinite(config.conv_clamp) and config.conv_clamp > 0):
        raise CheckpointError(f"{source}: conv_clamp {config.conv_clamp!r} must be a positive number")


def _as_ints(value) -> list[int] | None:
    try:
        return [int(v) for v in (value if hasattr(value, "__len__") else [value, value])]
    except (TypeError, ValueError):
        return None


def check_geometry(config: StyleGAN3Config, syn: PersistentRecord, source: str) -> None:
    """Compare the geometry stored with each NVIDIA layer to the one the config implies (strict)."""
    mods = _modules(syn)
    stored = {k: syn.state.get(k) for k in ("img_resolution", "img_channels", "w_dim", "num_layers", "num_critical",
                                            "margin_size", "output_scale")}
    want = {"img_resolution": config.size, "img_channels": config.img_channels, "w_dim": config.style_dim,
            "num_layers": config.num_layers, "num_critical": config.num_critical,
            "margin_size": config.margin_size, "output_scale": config.output_scale}
    wrong = [f"{k} {stored[k]!r} (config: {v!r})" for k, v in want.items() if not _close(stored[k], v)]
    if wrong:
        raise CheckpointError(f"{source}: the synthesis network does not match the config: {summarize(wrong, 3)}")
    specs = config.layer_specs()
    expected_names = ["input"] + [s.name for s in specs]
    if list(mods) != expected_names:
        raise CheckpointError(f"{source}: synthesis layers {summarize(list(mods))} do not match the config's "
                              f"{summarize(expected_names)}")
    inp, want = mods["input"].state, config.input_spec()
    got = (inp.get("channels"), _as_ints(inp.get("size")), inp.get("sampling_rate"), inp.get("bandwidth"))
    if got[0] != want.channels or got[1] != [want.size] * 2 or not _close(got[2], want.sampling_rate) \
            or not _close(got[3], want.bandwidth):
        raise CheckpointError(f"{source}: synthesis input geometry {got} does not match the config's {tuple(want)}")
    for spec in specs:
        st = mods[spec.name].state
        stored = {"is_torgb": st.get("is_torgb"), "in_channels": st.get("in_channels"),
                  "out_channels": st.get("out_channels"), "in_size": _as_ints(st.get("in_size")),
                  "out_size": _as_ints(st.get("out_size")), "in_sampling_rate": st.get("in_sampling_rate"),
                  "out_sampling_rate": st.get("out_sampling_rate"), "conv_kernel": st.get("conv_kernel"),
                  "up_factor": st.get("up_factor"), "down_factor": st.get("down_factor"),
                  "up_taps": st.get("up_taps"), "down_taps": st.get("down_taps"),
                  "down_radial": st.get("down_radial"), "padding": _as_ints(st.get("padding")),
                  "conv_clamp": st.get("conv_clamp")}
        derived = {"is_torgb": spec.is_torgb, "in_channels": spec.in_channels, "out_channels": spec.out_channels,
                   "in_size": [spec.in_size] * 2, "out_size": [spec.out_size] * 2,
                   "in_sampling_rate": spec.in_sampling_rate, "out_sampling_rate": spec.out_sampling_rate,
                   "conv_kernel": spec.conv_kernel, "up_factor": spec.up_factor, "down_factor": spec.down_factor,
                   "up_taps": spec.up_taps, "down_taps": spec.down_taps, "down_radial": spec.down_radial,
                   "padding": list(spec.padding), "conv_clamp": config.conv_clamp}
        wrong = [f"{k} {stored[k]!r} (config: {v!r})" for k, v in derived.items() if not _same(stored[k], v)]
        for k in ("in_cutoff", "out_cutoff", "in_half_width", "out_half_width"):
            if not _close(st.get(k), getattr(spec, k)):
                wrong.append(f"{k} {st.get(k)!r} (config: {getattr(spec, k)!r})")
        if wrong:
            raise CheckpointError(f"{source}: layer {spec.name} does not match the config: {summarize(wrong, 3)}")


def _same(a, b) -> bool:
    if isinstance(b, (bool, type(None))):
        return (a is None) if b is None else (a is not None and bool(a) == b and not isinstance(a, (str, list)))
    if isinstance(b, float):
        return _close(a, b)
    return a == b


def _close(a, b, rel: float = 1e-9) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def nvidia_sg3_to_ours(nv: dict[str, torch.Tensor], config: StyleGAN3Config, source: str) -> dict[str, torch.Tensor]:
    """NVIDIA names -> ours: mapping.fc{i} -> style.{i+1}, mapping.w_avg -> w_avg, synthesis.input.* -> input.*,
    synthesis.L{idx}_{size}_{ch}.* -> synthesis_layers.{idx}.*; a key left over is an error."""
    renames = {f"mapping.fc{i}.{p}": f"style.{i + 1}.{p}" for i in range(config.n_mlp) for p in ("weight", "bias")}
    renames["mapping.w_avg"] = "w_avg"
    for p in ("weight", "affine.weight", "affine.bias", "transform", "freqs", "phases"):
        renames[f"synthesis.input.{p}"] = f"input.{p}"
    for spec in config.layer_specs():
        for p in ("weight", "bias", "affine.weight", "affine.bias", "magnitude_ema", "up_filter", "down_filter"):
            renames[f"synthesis.{spec.name}.{p}"] = f"synthesis_layers.{spec.index}.{p}"
    unexpected = [k for k in nv if k not in renames]
    if unexpected:
        raise CheckpointError(f"{source}: unexpected keys in the StyleGAN3 generator {summarize(unexpected)}")
    out = {}
    for k, v in nv.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: {k} is a {type(v).__name__}, not a tensor")
        out[renames[k]] = v.float()
    return out


def build_stylegan3(config: StyleGAN3Config, state_dict: dict[str, torch.Tensor], *,
                    source: str = "checkpoint") -> StyleGAN3Generator:
    """Instantiate the generator and load the state dict strictly (names, shapes, finite values)."""
    check_sg3_config(config, source)
    return load_strict(StyleGAN3Generator(config), state_dict, source=source)


__all__ = ["is_stylegan3", "read_nvidia_sg3", "build_stylegan3", "config_from_kwargs", "check_geometry"]
