"""StyleGAN3 (T and R): parity with NVIDIA's code on tiny fixtures, the S-space contract, safe pickle reading.

The fixtures in tests/data/stylegan3/ were written by build_fixtures.py with NVIDIA's stylegan3 code on the CPU
(reference ops); the tests need neither that code nor scipy.
"""
from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from styleclip.errors import CheckpointError
from styleclip.nets.stylegan3 import StyleGAN3Config, StyleGAN3Generator, design_lowpass_filter, filtered_lrelu
from styleclip.store import nvidia_sg3
from styleclip.store.readers import RestrictedUnpickler, build_generator, read_generator, save_generator

DATA = Path(__file__).parent / "data" / "stylegan3"
KINDS = ("t", "r")


def _pkl(kind: str) -> Path:
    return DATA / f"sg3-{kind}-tiny.pkl"


def _ref(kind: str) -> dict[str, torch.Tensor]:
    with np.load(DATA / f"sg3-{kind}-tiny.npz", allow_pickle=False) as d:
        return {k: torch.from_numpy(d[k]) for k in d.files}


@pytest.fixture(scope="module", params=KINDS)
def sg3(request):
    kind = request.param
    return kind, build_generator(*read_generator(_pkl(kind)), source=str(_pkl(kind))), _ref(kind)


# ---- parity with NVIDIA (fp32, 1e-4) ------------------------------------------------------------------------------
def test_mapping_matches_nvidia(sg3):
    _, g, ref = sg3
    with torch.no_grad():
        torch.testing.assert_close(g.mapping_plus(ref["z"]), ref["w_plus"], atol=1e-4, rtol=0)
        torch.testing.assert_close(g.mapping(ref["z"]), ref["w_plus"][:, 0], atol=1e-4, rtol=0)
        torch.testing.assert_close(g.mapping_plus(ref["z_trunc"], 0.7, 8), ref["w_plus_trunc"], atol=1e-4, rtol=0)
    assert not torch.equal(ref["w_plus_trunc"][:, 0], ref["w_plus_trunc"][:, -1])  # the cutoff did cut


def test_synthesis_matches_nvidia(sg3):
    kind, g, ref = sg3
    with torch.no_grad():
        for tag in ("", "_trunc"):
            img = g.synthesis(ref[f"w_plus{tag}"])
            assert img.shape == ref[f"img{tag}"].shape == (3, 3, 32, 32)
            assert ref[f"img{tag}"].abs().max() > 0.05  # a real image, not all zeros
            torch.testing.assert_close(img, ref[f"img{tag}"], atol=1e-4, rtol=0)


def test_styles_match_nvidia_layers(sg3):
    """S as stylegan3-editing defines it: the normalised input t, then each layer's affine (toRGB x its gain)."""
    _, g, ref = sg3
    with torch.no_grad():
        styles = g.styles(ref["w_plus"])
    assert len(styles) == len(g.layers) == g.num_ws == 16
    for i, s in enumerate(styles):
        torch.testing.assert_close(s, ref[f"style_{i}"], atol=1e-5, rtol=0)
    torch.testing.assert_close(styles[0][:, :2].norm(dim=1), torch.ones(3))


def test_a_wrong_value_is_caught(sg3):
    """The parity check can fail: one perturbed magnitude_ema moves the image well past the tolerance."""
    _, g, ref = sg3
    layer = g.synthesis_layers[3]
    old = layer.magnitude_ema.clone()
    try:
        layer.magnitude_ema.mul_(1.5)
        with torch.no_grad():
            assert (g.synthesis(ref["w_plus"]) - ref["img"]).abs().max() > 1e-3
    finally:
        layer.magnitude_ema.copy_(old)


# ---- the S-space contract -----------------------------------------------------------------------------------------
def test_styles_round_trip_is_exact(sg3):
    _, g, ref = sg3
    w_plus = ref["w_plus"] + 0.3 * torch.randn(ref["w_plus"].shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(g.synthesis_from_styles(g.styles(w_plus)), g.synthesis(w_plus))
        assert torch.equal(g(w_plus), g.synthesis(w_plus))


def test_synthesis_range_chains_to_the_same_image(sg3):
    _, g, ref = sg3
    with torch.no_grad():
        styles = g.styles(ref["w_plus"])
        full = g.synthesis_from_styles(styles)
        for cut in (1, 6, len(g.layers) - 1):
            state = g.synthesis_range([s if i < cut else None for i, s in enumerate(styles)], 0, cut)
            assert state[1] is None
            x, img = g.synthesis_range([None if i < cut else s for i, s in enumerate(styles)], cut, None, state)
            assert torch.equal(img, full)
        with pytest.raises(ValueError, match="needs the state"):
            g.synthesis_range(styles, 3)


def test_user_transform_is_what_nvidia_stores():
    """The T fixture was built with gen_images.py's recipe for translate (0.1, -0.05), rotate 10 degrees."""
    from styleclip.nets.stylegan3 import user_transform

    _, state = read_generator(_pkl("t"))
    torch.testing.assert_close(user_transform((0.1, -0.05), 10.0), state["input.transform"], atol=1e-6, rtol=0)
    assert torch.equal(user_transform(), torch.eye(3))
    g = build_generator(*read_generator(_pkl("t")))
    w_plus = _ref("t")["w_plus"][:1]
    with torch.no_grad():
        g.set_transform()
        before = g.synthesis(w_plus)
        g.set_transform((0.25, 0.0), 0.0)
        shifted = g.synthesis(w_plus)
        g.set_transform()
        assert torch.equal(g.synthesis(w_plus), before)
    # config T is translation-equivariant: a quarter width = 8 of 32 pixels to the right (centre columns)
    assert (shifted - before)[..., 10:22].abs().mean() > 3e-3
    assert (shifted - torch.roll(before, 8, dims=3))[..., 10:22].abs().max() < 1e-3


def test_layer_table(sg3):
    kind, g, _ = sg3
    table = g.layers
    assert [layer.index for layer in table] == list(range(g.num_ws))
    assert [layer.wplus_row for layer in table] == list(range(g.num_ws))
    assert table[0].kind == "input" and table[0].channels == 4 and table[0].module == "input"
    assert table[-1].kind == "torgb" and [layer.kind for layer in table[1:-1]] == ["conv"] * 14
    with torch.no_grad():
        styles = g.styles(g.mapping_plus(torch.randn(2, g.config.style_dim)))
    assert [s.shape[1] for s in styles] == [layer.channels for layer in table]
    for layer in table[1:]:
        assert g.get_submodule(layer.module).affine.weight.shape[0] == layer.channels
    assert sorted({layer.resolution for layer in table}) == [16, 32]  # sampling rates of the 32 px net
    assert g.config.kind == kind


def test_gradients_reach_every_w_plus_row(sg3):
    _, g, ref = sg3
    w_plus = ref["w_plus"][:1].clone().requires_grad_(True)
    img = g.synthesis(w_plus)
    with torch.no_grad():  # (in place there, out of place with autograd: the same values)
        assert torch.equal(img, g.synthesis(w_plus))
    img.square().mean().backward()
    grad = w_plus.grad
    again = w_plus.detach().clone().requires_grad_(True)  # activation checkpointing: same values and gradients
    img2 = g.synthesis(again, checkpoint_min_res=32)
    assert torch.equal(img2, img)
    img2.square().mean().backward()
    torch.testing.assert_close(again.grad, grad, atol=1e-7, rtol=1e-5)
    assert torch.isfinite(grad).all()
    assert (grad.abs().sum(dim=2) > 0).all()  # the input transform's row and every layer's row
    for p in g.parameters():
        assert p.grad is None  # the loaded generator is frozen


def test_batch_does_not_change_a_sample(sg3):
    _, g, ref = sg3
    with torch.no_grad():
        torch.testing.assert_close(g.synthesis(ref["w_plus"][1:2]), g.synthesis(ref["w_plus"])[1:2],
                                   atol=1e-6, rtol=0)


def test_noise_mode_is_accepted_and_checked(sg3):
    _, g, ref = sg3
    with torch.no_grad():
        assert torch.equal(g.synthesis(ref["w_plus"], noise_mode="random"), g.synthesis(ref["w_plus"]))
        with pytest.raises(ValueError, match="noise_mode"):
            g.synthesis(ref["w_plus"], noise_mode="loud")
        with pytest.raises(ValueError, match="w_plus must have shape"):
            g.synthesis(ref["w_plus"][:, :3])


def test_mapping_cutoff_needs_mapping_plus(sg3):
    _, g, ref = sg3
    with pytest.raises(ValueError, match="mapping_plus"):
        g.mapping(ref["z"], 0.7, 8)
    with torch.no_grad():
        torch.testing.assert_close(g.mapping(ref["z"], 0.7, g.num_ws), g.mapping(ref["z"], 0.7))


# ---- geometry and filters of the published shapes -----------------------------------------------------------------
GEOMETRY = json.loads((DATA / "geometry.json").read_text())


@pytest.mark.parametrize("name", sorted(GEOMETRY))
def test_geometry_matches_nvidia_for_published_shapes(name):
    """Layer names (L{idx}_{size}_{ch}), sizes, rates, cutoffs, factors, taps and paddings as NVIDIA derives them
    for T/R at 1024, T 512 and R 256; our filter design matches NVIDIA's scipy one at that size too."""
    ref = GEOMETRY[name]
    kw = ref["kwargs"]
    cfg = StyleGAN3Config(size=kw["img_resolution"], channel_base=kw["channel_base"], channel_max=kw["channel_max"],
                          conv_kernel=kw.get("conv_kernel", 3), use_radial_filters=kw.get("use_radial_filters", False))
    assert tuple(cfg.input_spec()) == pytest.approx(tuple(ref["input"][k] for k in
                                                          ("channels", "size", "sampling_rate", "bandwidth")))
    specs = cfg.layer_specs()
    assert [s.name for s in specs] == [layer["name"] for layer in ref["layers"]]
    for spec, layer in zip(specs, ref["layers"]):
        for key, value in layer.items():
            if key in ("name", "up_filter_sum", "down_filter_sq"):
                continue
            got = list(getattr(spec, key)) if key == "padding" else getattr(spec, key)
            assert got == pytest.approx(value, rel=1e-12), (spec.name, key)
        up = design_lowpass_filter(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, spec.tmp_sampling_rate)
        down = design_lowpass_filter(spec.down_taps, spec.out_cutoff, spec.out_half_width * 2,
                                     spec.tmp_sampling_rate, radial=spec.down_radial)
        assert (up is None) == (layer["up_filter_sum"] is None) and (down is None) == (layer["down_filter_sq"] is None)
        if up is not None:
            assert float(up.double().sum()) == pytest.approx(layer["up_filter_sum"], abs=1e-6)
        if down is not None:
            assert down.ndim == (2 if spec.down_radial else 1)
            assert float(down.double().square().sum()) == pytest.approx(layer["down_filter_sq"], rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_designed_filters_equal_the_pickled_ones(kind):
    """A fresh generator (no pickle, no scipy) designs the same filters NVIDIA stored."""
    config, state = read_generator(_pkl(kind))
    fresh = StyleGAN3Generator(config).state_dict()
    keys = [k for k in state if k.endswith("_filter")]
    assert len(keys) == 2 * 14 and (kind == "t" or any(state[k].ndim == 2 for k in keys))
    for k in keys:
        torch.testing.assert_close(fresh[k], state[k], atol=1e-6, rtol=0)


@pytest.mark.parametrize("padding", [(0, 0, 0, 0), (5, 6, 4, 7), (-3, -4, -1, 2), (-9, -10, -9, -10)])
def test_zero_insertion_with_padding_equals_the_reference_steps(padding):
    from styleclip.nets.stylegan3 import _upsample_pad

    x = torch.randn(2, 3, 24, 25, generator=torch.Generator().manual_seed(1))
    for up in (1, 2, 4):
        n, c, h, w = x.shape
        ref = torch.zeros(n, c, h * up, w * up)
        ref[:, :, ::up, ::up] = x
        ref = torch.nn.functional.pad(ref, list(padding))
        assert torch.equal(_upsample_pad(x, up, padding), ref)


def test_filtered_lrelu_strided_down_equals_full_then_subsample():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 20, 20, generator=g)
    fu = design_lowpass_filter(12, 4.0, 3.0, 32.0)
    fd2 = design_lowpass_filter(12, 4.0, 3.0, 32.0, radial=True)
    kw = dict(bias=torch.randn(3, generator=g), up=2, padding=(5, 6, 5, 6), gain=2 ** 0.5, slope=0.2, clamp=1.5)
    for fd in (fu, fd2):
        strided = filtered_lrelu(x, up_filter=fu, down_filter=fd, down=2, **kw)
        full = filtered_lrelu(x, up_filter=fu, down_filter=fd, down=1, **kw)[:, :, ::2, ::2]
        torch.testing.assert_close(strided, full, atol=1e-6, rtol=0)


# ---- reading NVIDIA pickles safely --------------------------------------------------------------------------------
def _record(kind: str):
    with open(_pkl(kind), "rb") as f:
        return RestrictedUnpickler(f).load()["G_ema"]


@pytest.mark.parametrize("kind", KINDS)
def test_bare_generator_class_name_is_recognised(kind):
    g = _record(kind)
    assert g.class_name == "Generator"  # what NVIDIA stores: no 'stylegan3' in it
    assert nvidia_sg3.is_stylegan3(g)
    config, _ = read_generator(_pkl(kind))
    assert isinstance(config, StyleGAN3Config) and config.use_radial_filters == (kind == "r")
    import styleclip.store.readers as readers

    assert "only StyleGAN2 pickles are supported" not in Path(readers.__file__).read_text()


def test_the_fixture_ships_no_nvidia_source():
    assert "module source omitted" in _record("t").meta["module_src"]
    for kind in KINDS:
        assert b"def modulated_conv2d" not in _pkl(kind).read_bytes()


def _one_line_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as e:
        read_generator(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    return msg


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.97])
def test_truncated_pickle_is_one_line_error(tmp_path, cut):
    data = _pkl("t").read_bytes()
    bad = tmp_path / "cut.pkl"
    bad.write_bytes(data[:int(len(data) * cut)])
    _one_line_error(bad)


def test_tampered_bytes_are_one_line_errors(tmp_path):
    data = bytearray(_pkl("r").read_bytes())
    rng = np.random.default_rng(0)
    for i in range(6):
        bad = bytearray(data)
        for pos in rng.integers(len(data) // 10, len(data), size=4):
            bad[pos] ^= 0xFF
        path = tmp_path / f"tampered{i}.pkl"
        path.write_bytes(bytes(bad))
        try:
            config, state = read_generator(path)
            build_generator(config, state, source=str(path))  # flipped weight bytes may still load
        except CheckpointError as e:
            assert "\n" not in str(e)


def test_unknown_globals_are_refused(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Evil()}))
    msg = _one_line_error(path)
    assert "refusing to load global" in msg and "system" in msg
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(eval))).load()


def test_geometry_mismatch_is_refused():
    g = _record("t")
    layer = g.state["_modules"]["synthesis"].state["_modules"]["L5_52_13"]
    layer.state["padding"] = [0, 0, 0, 0]
    with pytest.raises(CheckpointError, match=r"layer L5_52_13 does not match the config: padding"):
        nvidia_sg3.read_nvidia_sg3(g, "x.pkl")


def test_synthesis_attributes_must_match_the_config():
    g = _record("r")
    g.state["_modules"]["synthesis"].state["output_scale"] = 0.5
    with pytest.raises(CheckpointError, match=r"synthesis network does not match the config: output_scale 0.5"):
        nvidia_sg3.read_nvidia_sg3(g, "x.pkl")


def test_unknown_generator_options_are_refused():
    g = _record("t")
    g.state["_init_kwargs"]["first_cutoff"] = 3
    with pytest.raises(CheckpointError, match="synthesis"):  # the stored layers no longer follow
        nvidia_sg3.read_nvidia_sg3(g, "x.pkl")
    g = _record("t")
    g.state["_init_kwargs"]["invented_option"] = 1
    with pytest.raises(CheckpointError, match="unsupported StyleGAN3 generator options invented_option"):
        nvidia_sg3.read_nvidia_sg3(g, "x.pkl")


def test_missing_or_reshaped_tensors_are_refused():
    g = _record("r")
    layer = g.state["_modules"]["synthesis"].state["_modules"]["L2_36_32"]
    del layer.state["_buffers"]["magnitude_ema"]
    config, state = nvidia_sg3.read_nvidia_sg3(g, "x.pkl")
    with pytest.raises(CheckpointError, match=r"missing keys synthesis_layers\.2\.magnitude_ema"):
        build_generator(config, state, source="x.pkl")
    g = _record("r")
    g.state["_modules"]["synthesis"].state["_modules"]["input"].state["_buffers"]["freqs"] = torch.zeros(5, 2)
    config, state = nvidia_sg3.read_nvidia_sg3(g, "x.pkl")
    with pytest.raises(CheckpointError, match=r"shape mismatch input\.freqs \[5, 2\]"):
        build_generator(config, state, source="x.pkl")
    g = _record("r")
    g.state["_modules"]["mapping"].state["_parameters"]["fc0.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        nvidia_sg3.read_nvidia_sg3(g, "x.pkl")


def test_non_finite_weights_are_refused():
    g = _record("t")
    g.state["_modules"]["synthesis"].state["_modules"]["input"].state["_parameters"]["weight"][0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="finite|NaN|nan"):
        nvidia_sg3.read_nvidia_sg3(g, "x.pkl")


def test_converted_cache_round_trip(tmp_path):
    """The factory caches converted checkpoints as safetensors: a StyleGAN3 one reads back as StyleGAN3."""
    g = build_generator(*read_generator(_pkl("r")))
    path = save_generator(g, tmp_path / "sg3.safetensors")
    config, state = read_generator(path)
    assert config == g.config
    again = build_generator(config, state, source=str(path))
    w_plus = _ref("r")["w_plus"]
    with torch.no_grad():
        assert torch.equal(again.synthesis(w_plus), g.synthesis(w_plus))


def test_factory_loads_an_sg3_pickle(tmp_path):
    from styleclip.factory import load_generator

    g = load_generator(str(_pkl("t")))
    assert isinstance(g, StyleGAN3Generator)
    ref = _ref("t")
    with torch.no_grad():
        torch.testing.assert_close(g.synthesis(ref["w_plus"]), ref["img"], atol=1e-4, rtol=0)


def test_registry_lists_the_twelve_published_pickles():
    from styleclip.store.registry import REGISTRY

    sg3 = {n: s for n, s in REGISTRY.items() if n.startswith("stylegan3-")}
    assert len(sg3) == 12
    for name, spec in sg3.items():
        _, cfg, data, res = name.split("-")
        assert spec.filename == f"stylegan3-{cfg}-{data}-{res}x{res}.pkl"
        assert spec.urls == ("https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
                             + spec.filename,)
        assert spec.sha256 is None and spec.non_commercial and spec.kind == "generator"
        assert spec.extra["architecture"] == "stylegan3" and spec.extra["resolution"] == int(res)
    assert {n.split("-", 2)[2] for n in sg3} == {"ffhq-1024", "ffhqu-256", "ffhqu-1024", "metfaces-1024",
                                                 "metfacesu-1024", "afhqv2-512"}


# ---- devices --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_other_devices_match_cpu(device):
    available = torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()
    if not available:
        pytest.skip(f"no {device}")
    ref = _ref("r")
    g = build_generator(*read_generator(_pkl("r")))
    with torch.no_grad():
        img = g.to(device).synthesis(ref["w_plus"].to(device)).cpu()
    torch.testing.assert_close(img, ref["img"], atol=1e-4, rtol=0)
