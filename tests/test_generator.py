import json

import pytest
import torch
import torch.nn.functional as F

from helpers import DATA, parity_state_dict
from styleclip.store.readers import build_generator, check_keys, read_generator
from styleclip.nets import ops
from styleclip.nets.stylegan2 import Generator, GeneratorConfig, style_layer_table


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    spec, sd = parity_state_dict()
    path = tmp_path_factory.mktemp("parity") / "g.pt"
    torch.save({"g_ema": sd}, path)
    config, state = read_generator(path)
    g = build_generator(config, state)
    ref = torch.load(DATA / "reference.pt", weights_only=True)
    g.w_avg.copy_(ref["w_avg"])
    return g, ref


def test_parity_with_rosinality_reference(parity):
    g, ref = parity
    assert g.config.size == 16 and g.config.n_mlp == 2 and g.num_ws == 6
    with torch.no_grad():
        w = g.mapping(ref["z"])
        assert (w - ref["w"]).abs().max() < 1e-4
        assert (g.synthesis(g.broadcast(w)) - ref["img_z"]).abs().max() < 1e-4
        assert (g.synthesis(ref["w_plus"]) - ref["img_wplus"]).abs().max() < 1e-4
        img_trunc = g.synthesis(g.broadcast(g.mapping(ref["z"], truncation_psi=0.7)))
        assert (img_trunc - ref["img_trunc"]).abs().max() < 1e-4
        styles = g.styles(ref["w_plus"])
        assert len(styles) == len(ref["styles"]) == 8
        for a, b in zip(styles, ref["styles"]):
            assert (a - b).abs().max() < 1e-4


def test_ffhq1024_keys_load_strictly():
    spec = json.loads((DATA / "keys_ffhq1024.json").read_text())
    with torch.device("meta"):
        g = Generator(GeneratorConfig(size=1024))
    ours = {k: tuple(v.shape) for k, v in g.state_dict().items() if k != "w_avg"}
    theirs = {e["key"]: torch.empty(e["shape"], device="meta") for e in spec["keys"]
              if not e["key"].endswith(("blur.kernel", "upsample.kernel"))}
    assert len(spec["keys"]) == 171
    check_keys(ours, theirs, source="ffhq1024")  # raises on any missing/unexpected/shape mismatch
    n_params = sum(p.numel() for p in g.parameters())
    assert n_params == 30_370_060  # WEIGHTS.md 1.2


def test_style_space_table_at_1024():
    table = style_layer_table(GeneratorConfig(size=1024))
    assert len(table) == 26
    assert [l.channels for l in table] == [512] * 15 + [256] * 3 + [128] * 3 + [64] * 3 + [32] * 2
    assert sum(l.channels for l in table) == 9088
    assert [l.index for l in table if l.kind == "torgb"] == [1, 4, 7, 10, 13, 16, 19, 22, 25]
    assert sum(l.channels for l in table if l.kind == "conv") == 6048
    assert [l.wplus_row for l in table][:5] == [0, 1, 1, 2, 3]
    assert max(l.wplus_row for l in table) == 17


def test_styles_round_trip_exact_and_gradients(parity):
    g, ref = parity
    w_plus = ref["w_plus"].clone().requires_grad_(True)
    img = g.synthesis(w_plus)
    styles = g.styles(w_plus)
    assert torch.equal(g.synthesis_from_styles(styles), img)
    img.square().mean().backward()
    assert w_plus.grad is not None and w_plus.grad.abs().sum() > 0
    leaf = [s.detach().requires_grad_(True) for s in g.styles(ref["w_plus"])]
    g.synthesis_from_styles(leaf).mean().backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in leaf)
    assert all(p.grad is None for p in g.parameters())


def _fused_modconv(x, weight, styles, demodulate, up, k1d):
    """The grouped-convolution (per-sample weights) reference form."""
    n, ci = styles.shape
    co, _, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.view(n, 1, ci, 1, 1)
    if demodulate:
        w = w * torch.rsqrt(w.square().sum([2, 3, 4], keepdim=True) + 1e-8)
    x = x.reshape(1, n * ci, *x.shape[2:])
    if up:
        w = w.transpose(1, 2).reshape(n * ci, co, kh, kw)
        out = F.conv_transpose2d(x, w, stride=2, groups=n)
        out = out.view(n, co, *out.shape[2:])
        return ops.upfirdn2d(out, k1d, pad=(1, 1), gain=4.0)
    out = F.conv2d(x, w.reshape(n * co, ci, kh, kw), padding=kh // 2, groups=n)
    return out.view(n, co, *out.shape[2:])


@pytest.mark.parametrize("up,demod,k", [(False, True, 3), (True, True, 3), (False, False, 1)])
@pytest.mark.parametrize("res,with_grad", [(4, False), (32, False), (32, True)])
@pytest.mark.parametrize("n", [1, 3])
def test_nonfused_modconv_equals_grouped_form(up, demod, k, res, with_grad, n):
    """Both evaluation strategies (input scaling; weight modulation for a single image in inference) equal
    the grouped form."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, res, res, generator=gen).requires_grad_(with_grad)
    weight = torch.randn(24, 16, k, k, generator=gen) / (16 * k * k) ** 0.5
    styles = 1 + 0.3 * torch.randn(n, 16, generator=gen)
    k1d = ops.make_kernel_1d([1, 3, 3, 1])
    ours = ops.modulated_conv2d(x, weight, styles, demodulate=demod, up=up, blur_kernel_1d=k1d)
    ref = _fused_modconv(x.detach(), weight, styles, demod, up, k1d)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 1e-5


def test_upfirdn2d_matches_2d_reference():
    x = torch.randn(2, 3, 5, 5)
    k = ops.make_kernel([1, 3, 3, 1]) * 4
    up = torch.zeros(2, 3, 10, 10)
    up[:, :, ::2, ::2] = x
    ref = F.conv2d(F.pad(up, [2, 1, 2, 1]).view(6, 1, 13, 13), k.flip([0, 1]).view(1, 1, 4, 4)).view(2, 3, 10, 10)
    ours = ops.upfirdn2d(x, ops.make_kernel_1d([1, 3, 3, 1]), up=2, pad=(2, 1), gain=4.0)
    assert (ours - ref).abs().max() < 1e-6


def _upfirdn2d_2d_reference(x, k1d, up, pad, gain):
    """Zero insertion, zero padding, then a true 2-D convolution, channel by channel (the reference definition)."""
    n, c, h, w = x.shape
    u = torch.zeros(n, c, h * up, w * up)
    u[:, :, ::up, ::up] = x
    k = torch.outer(k1d, k1d) * gain
    u = F.pad(u, [pad[0], pad[1], pad[0], pad[1]])
    out = F.conv2d(u.reshape(n * c, 1, *u.shape[2:]), k.flip([0, 1]).view(1, 1, *k.shape))
    return out.view(n, c, *out.shape[2:])


@pytest.mark.parametrize("up,pad", [(1, (1, 1)), (1, (2, 1)), (1, (0, 2)), (2, (2, 1)), (2, (1, 1)), (2, (3, 0)),
                                    (2, (0, 0))])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upfirdn2d_asymmetric_kernel_any_padding(up, pad, channels_last):
    """An asymmetric kernel catches a missing or doubled flip; every padding case equals the definition."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 5, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    k1d = torch.tensor([1.0, 2.0, 4.0, 0.5]) / 7.5
    ref = _upfirdn2d_2d_reference(x, k1d, up, pad, 4.0)
    ours = ops.upfirdn2d(x, k1d, up=up, pad=pad, gain=4.0)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 1e-5


@pytest.mark.parametrize("size,mult", [(16, 1), (32, 2), (64, 1)])
def test_any_size_and_multiplier(size, mult):
    torch.manual_seed(0)
    cfg = GeneratorConfig(size=size, style_dim=32, n_mlp=2, channel_multiplier=mult, channel_base=256,
                          channel_max=16)
    g = Generator(cfg).eval()
    z = torch.randn(2, 32)
    with torch.no_grad():
        img = g.synthesis(g.mapping_plus(z, truncation_psi=0.5, truncation_cutoff=2))
    assert img.shape == (2, 3, size, size) and torch.isfinite(img).all()
    assert len(g.styles(g.mapping_plus(z))) == 3 * (cfg.log_size - 2) + 2


def test_bad_sizes_and_shapes(debug_generator):
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(size=48)
    with pytest.raises(ValueError, match="w_plus must have shape"):
        debug_generator.synthesis(torch.zeros(1, 3, 64))


def test_noise_modes_and_truncation(debug_generator):
    g = debug_generator
    w = g.broadcast(g.mapping(torch.randn(2, 64, generator=torch.Generator().manual_seed(1))))
    with torch.no_grad():
        a = g.synthesis(w)
        assert torch.equal(a, g.synthesis(w, noise_mode="const"))
        r1 = g.synthesis(w, noise_mode="random", generator=torch.Generator().manual_seed(3))
        r2 = g.synthesis(w, noise_mode="random", generator=torch.Generator().manual_seed(3))
        assert torch.equal(r1, r2) and not torch.equal(a, r1)
        assert not torch.equal(a, g.synthesis(w, noise_mode="none"))
    with pytest.raises(ValueError):
        g.synthesis(w, noise_mode="bogus")
    t = g.truncate(w, 0.0)
    assert torch.allclose(t, g.w_avg.expand_as(t))
    cut = g.truncate(w, 0.0, cutoff=2)
    assert torch.equal(cut[:, 2:], w[:, 2:]) and torch.allclose(cut[:, :2], g.w_avg.expand(2, 2, -1))


def test_bfloat16_autocast_close_to_float32(debug_generator):
    g = debug_generator
    w = g.broadcast(g.mapping(torch.randn(1, 64, generator=torch.Generator().manual_seed(2))))
    with torch.no_grad():
        ref = g.synthesis(w)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = g.synthesis(w)
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().mean() < 0.05


def test_activation_checkpointing_gives_the_same_values_and_gradients(parity):
    g, ref = parity
    grads = []
    for res in (None, 8):
        w = ref["w_plus"].clone().requires_grad_(True)
        img = g.synthesis(w, checkpoint_min_res=res)
        img.square().mean().backward()
        grads.append((img.detach(), w.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("up,act", [(False, True), (True, True), (False, False)])
@pytest.mark.parametrize("n", [1, 2])
def test_styled_conv_function_equals_composed_ops_values_and_gradients(up, act, n):
    """The memory-saving autograd function (frozen weights) against autograd through the composed ops."""
    gen = torch.Generator().manual_seed(0)
    k = 3 if act else 1
    x = torch.randn(n, 8, 8, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(6, 8, k, k, generator=gen) / (8 * k * k) ** 0.5
    styles = 1 + 0.3 * torch.randn(n, 8, generator=gen)
    noise = 0.3 * torch.randn(1, 1, 16 if up else 8, 16 if up else 8, generator=gen) if act else None
    bias = 0.2 * torch.randn(6, generator=gen) if act else None
    k1d = ops.make_kernel_1d([1, 3, 3, 1])
    results = []
    for fused in (True, False):
        xi, si = x.clone().requires_grad_(True), styles.clone().requires_grad_(True)
        if fused:
            out = ops.styled_conv2d(xi, weight, si, noise=noise, bias=bias, demodulate=act, up=up, blur_kernel_1d=k1d)
        else:
            out = ops.modulated_conv2d(xi, weight, si, demodulate=act, up=up, blur_kernel_1d=k1d)
            if act:
                out = ops.fused_leaky_relu(out + noise, bias)
        (out * torch.linspace(-1, 2, out.numel()).view(out.shape)).sum().backward()
        results.append((out.detach(), xi.grad, si.grad))
    (o1, gx1, gs1), (o2, gx2, gs2) = results
    assert torch.equal(o1, o2)
    assert torch.allclose(gx1, gx2, atol=1e-5, rtol=1e-4)
    assert torch.allclose(gs1, gs2, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("k", [1, 3])
def test_conv_input_gradient_keeps_channels_last(k):
    """An NCHW upstream gradient (the image loss's) gives a channels_last input gradient with the same values:
    mixed layouts made the backward of the 1024 px layers reorder and stride through 128 MB tensors."""
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(1, 3, 64, 64, generator=gen)
    weight = torch.randn(3, 16, k, k, generator=gen)
    shape = torch.Size([1, 16, 64, 64])
    got = ops._conv_input_grad(g, weight, False, None, shape)
    assert got.is_contiguous(memory_format=torch.channels_last)
    want = torch.nn.grad.conv2d_input(shape, weight, g, padding=k // 2)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_single_image_inference_gives_the_reference_values(parity):
    """Batch 1 without gradients takes the single-image path (gain folded into the modulated weight, biases
    inside the convolutions, noise and activation in place, batched style affines): the reference per image."""
    g, ref = parity
    with torch.no_grad():
        for i in range(ref["w_plus"].shape[0]):
            img = g.synthesis(ref["w_plus"][i:i + 1])
            assert (img - ref["img_wplus"][i:i + 1]).abs().max() < 1e-4
            assert img.is_contiguous()
    img = g.synthesis(ref["w_plus"][:1])  # autograd on: the composed ops
    assert (img - ref["img_wplus"][:1]).abs().max() < 1e-4


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("clamp", [None, 0.3])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_single_image_styled_conv_inference_equals_the_grouped_form(up, clamp, layout):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 8, 8, 8, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(6, 8, 3, 3, generator=gen) / 72 ** 0.5
    styles = 1 + 0.3 * torch.randn(1, 8, generator=gen)
    noise = torch.randn(1, 1, 16 if up else 8, 16 if up else 8, generator=gen)
    strength = torch.tensor([0.7])
    bias = 0.2 * torch.randn(6, generator=gen)
    k1d = ops.make_kernel_1d([1, 3, 3, 1])
    w = weight.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else weight
    with torch.no_grad():
        out = ops.styled_conv2d(x, w, styles, noise=noise, noise_weight=strength, bias=bias, up=up,
                                blur_kernel_1d=k1d, clamp=clamp)
    ref = ops.fused_leaky_relu(_fused_modconv(x, weight, styles, True, up, k1d) + strength * noise, bias,
                               clamp=clamp)
    assert (out - ref).abs().max() < 1e-5


def test_synthesis_gradients_match_with_trainable_weights(parity):
    """Frozen weights take the fused autograd function, trainable ones the composed ops: same gradients."""
    g, ref = parity
    grads = []
    for trainable in (False, True):
        g.requires_grad_(trainable)
        w = ref["w_plus"].clone().requires_grad_(True)
        img = g.synthesis(w)
        (img * torch.linspace(-1, 1, img.numel()).view(img.shape)).sum().backward()
        grads.append((img.detach(), w.grad))
    g.requires_grad_(False)
    g.zero_grad(set_to_none=True)
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    scale = grads[1][1].abs().max()
    assert (grads[0][1] - grads[1][1]).abs().max() < 1e-5 * scale, (grads[0][1] - grads[1][1]).abs().max() / scale


@pytest.mark.parametrize("trainable", [False, True])
def test_fused_upsampling_path_gives_the_reference_values_and_gradients(parity, monkeypatch, trainable):
    """The GPU path (upsampling conv and blur as one 6x6 transposed conv), forced on the CPU: the rosinality
    reference image, and the gradients of the separate path, both through the memory-saving function (frozen
    weights) and through autograd of the composed ops (trainable weights)."""
    g, ref = parity
    results = []
    for devices in (("cpu",), ()):
        monkeypatch.setattr(ops, "FUSED_UPSAMPLING_DEVICES", devices)
        g.requires_grad_(trainable)
        w = ref["w_plus"].clone().requires_grad_(True)
        img = g.synthesis(w)
        (img * torch.linspace(-1, 1, img.numel()).view(img.shape)).sum().backward()
        with torch.no_grad():
            single = g.synthesis(ref["w_plus"][:1])  # one image: the weight-modulation path
        results.append((img.detach(), w.grad, single))
    g.requires_grad_(False)
    g.zero_grad(set_to_none=True)
    (img_f, grad_f, single_f), (img_s, grad_s, single_s) = results
    assert (img_f - ref["img_wplus"]).abs().max() < 1e-4
    assert (single_f - single_s).abs().max() < 1e-5
    assert (grad_f - grad_s).abs().max() < 1e-5 * grad_s.abs().max()


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_synthesis_traces_as_one_graph(debug_generator, monkeypatch, grad, fused):
    """torch.compile sees the whole synthesis as one graph, also on the GPU's fused upsampling path: a graph
    break per layer (e.g. a .item()) would recompile per layer and, past dynamo's recompile limit, leave the
    deeper layers eager."""
    monkeypatch.setattr(ops, "FUSED_UPSAMPLING_DEVICES", ("cpu",) if fused else ())
    g = debug_generator
    w = g.broadcast(g.mapping(torch.randn(1, g.config.style_dim), 0.7)).detach().requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        report = torch._dynamo.explain(g.synthesis)(w)
    torch._dynamo.reset()
    assert report.graph_break_count == 0, [r.reason for r in report.break_reasons]
    assert report.graph_count == 1
