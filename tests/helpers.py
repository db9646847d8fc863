"""Shared test utilities: the parity-fixture weight recipe and NVIDIA-layout pickles built in memory."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"


def recipe_tensor(key: str, shape) -> torch.Tensor:
    """The parity fixture's weight recipe (shared/fixtures/stylegan2_parity/README.md)."""
    if key.endswith("blur.kernel") or key.endswith("upsample.kernel"):
        k = torch.tensor([1.0, 3.0, 3.0, 1.0])
        return torch.outer(k, k) / 64 * 4
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    r = torch.randn(shape, generator=g)
    if key.startswith("style.") and key.endswith(".weight"):
        return 100 * r
    if key.startswith("style.") and key.endswith(".bias"):
        return 10 * r
    if key.endswith("modulation.bias"):
        return 1 + 0.2 * r
    if key.endswith("noise.weight"):
        return 0.3 * r
    if key.endswith("activate.bias") or (key.startswith("to_rgb") and key.endswith(".bias") and len(shape) == 4):
        return 0.2 * r
    return r


def parity_state_dict(keys_file: str = "keys.json") -> tuple[dict, dict]:
    spec = json.loads((DATA / keys_file).read_text())
    sd = {e["key"]: recipe_tensor(e["key"], e["shape"]) for e in spec["keys"]}
    return spec, sd


# ---- NVIDIA stylegan2-ada-pytorch pickles, written the way NVIDIA's persistence module writes them ------
def ours_to_nvidia(sd: dict, size: int, n_mlp: int) -> dict[str, dict]:
    """Rosinality-layout state dict -> per-module NVIDIA (params, buffers), the inverse of WEIGHTS.md 2.4."""
    import math

    mods: dict[str, dict] = {}

    def put(mod, kind, name, t):
        mods.setdefault(mod, {"_parameters": {}, "_buffers": {}})[kind][name] = t

    for i in range(n_mlp):
        put(f"mapping.fc{i}", "_parameters", "weight", sd[f"style.{i + 1}.weight"].clone())
        put(f"mapping.fc{i}", "_parameters", "bias", sd[f"style.{i + 1}.bias"].clone())
    put("mapping", "_buffers", "w_avg", sd["w_avg"].clone())
    put("synthesis.b4", "_parameters", "const", sd["input.input"][0].clone())
    filt = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64

    def layer(dst, src, k):
        put(dst, "_parameters", "weight", sd[f"{src}.conv.weight"][0].clone())
        put(dst, "_parameters", "bias", sd[f"{src}.activate.bias"].clone())
        put(dst, "_parameters", "noise_strength", sd[f"{src}.noise.weight"].reshape(()).clone())
        put(dst, "_buffers", "noise_const", sd[f"noises.noise_{k}"][0, 0].clone())
        put(dst, "_buffers", "resample_filter", filt.clone())
        put(dst + ".affine", "_parameters", "weight", sd[f"{src}.conv.modulation.weight"].clone())
        put(dst + ".affine", "_parameters", "bias", sd[f"{src}.conv.modulation.bias"].clone())

    def torgb(dst, src):
        put(dst, "_parameters", "weight", sd[f"{src}.conv.weight"][0].clone())
        put(dst, "_parameters", "bias", sd[f"{src}.bias"].reshape(3).clone())
        put(dst + ".affine", "_parameters", "weight", sd[f"{src}.conv.modulation.weight"].clone())
        put(dst + ".affine", "_parameters", "bias", sd[f"{src}.conv.modulation.bias"].clone())

    layer("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for i in range(int(math.log2(size)) - 2):
        res = 2 ** (i + 3)
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * i}", 2 * i + 1)
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * i + 1}", 2 * i + 2)
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{i}")
        put(f"synthesis.b{res}", "_buffers", "resample_filter", filt.clone())
    return mods


MODULE_SRC_TRAP = (
    "import pathlib\n"
    "pathlib.Path({path!r}).write_text('module source was executed')\n"
    "raise SystemExit('module source was executed')\n"
)


def write_nvidia_pkl(path, sd: dict, *, size: int, n_mlp: int, channel_base: int = 32768, channel_max: int = 512,
                     conv_clamp=None, trap_file: str = "/tmp/styleclip-trap", extra_globals: bool = False) -> None:
    """Pickle G_ema the way stylegan2-ada-pytorch's persistence does: nested records with module source."""
    import pickle
    import sys
    import types

    import numpy as np

    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # never called by the loader under test
        raise AssertionError("must not be called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict

    class Record:
        def __init__(self, meta):
            self.meta = meta

        def __reduce__(self):
            return (_reconstruct_persistent_obj, (self.meta,))

    src = MODULE_SRC_TRAP.format(path=str(trap_file))
    mods = ours_to_nvidia(sd, size, n_mlp)

    def build(prefix: str, class_name: str, init_kwargs=None):
        own = mods.get(prefix, {"_parameters": {}, "_buffers": {}})
        children = {}
        lead = prefix + "." if prefix else ""
        names = sorted({m[len(lead):].split(".")[0] for m in mods if m.startswith(lead) and m != prefix})
        for name in names:
            children[name] = build(lead + name, "training.networks.Layer")
        from collections import OrderedDict

        params = OrderedDict((k, torch.nn.Parameter(v, requires_grad=False)) for k, v in own["_parameters"].items())
        state = {
            "training": False,
            "_parameters": params,
            "_buffers": OrderedDict(own["_buffers"]),
            "_non_persistent_buffers_set": set(),
            "_modules": OrderedDict(children),
            "_init_args": (),
            "_init_kwargs": init_kwargs or EasyDict(),
            "weight_gain": np.float64(0.5),
        }
        return Record({"type": "class", "version": 6, "module_src": src, "class_name": class_name, "state": state})

    init = EasyDict(z_dim=sd["style.1.weight"].shape[1], c_dim=0, w_dim=sd["style.1.weight"].shape[1],
                    img_resolution=size, img_channels=3,
                    mapping_kwargs=EasyDict(num_layers=n_mlp),
                    synthesis_kwargs=EasyDict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=4,
                                              conv_clamp=conv_clamp))
    # the root record holds mapping + synthesis as children
    g_ema = build("", "training.networks.Generator", init)
    payload = {"G": g_ema, "D": None, "G_ema": g_ema, "augment_pipe": None,
               "training_set_kwargs": EasyDict(resolution=size)}
    if extra_globals:
        payload["evil"] = os_system_reducer()
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")}
    sys.modules.update({"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
                        "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util})
    try:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class os_system_reducer:
    """An object whose unpickling would call os.system (the classic malicious pickle)."""

    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/styleclip-pwned",))


def random_universal_mapper(g, path: Path, *, clip_dim: int = 32, std: float = 0.05):
    """(a UniversalMapper for generator `g` with small random weights, the file it is saved to)."""
    from styleclip.store.mappers import save_universal_mapper
    from styleclip.nets.universal_mapper import UniversalMapper

    m = UniversalMapper(g.num_ws, g.config.style_dim, clip_dim, hidden=32)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=std)
    return m, save_universal_mapper(m, path)
