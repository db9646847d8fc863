"""Photo -> W+: the projector on the debug generator, the inversion cache, and the e4e encoder."""

import dataclasses

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from styleclip.photo import invert as inversion
from styleclip.errors import CheckpointError
from styleclip.photo.invert import (InversionConfig, encode, invert_aligned, invert_photo, learning_rate, load_e4e, multiscale_mse, project)
from styleclip.nets.e4e import Encoder4Editing

skdata = pytest.importorskip("skimage.data")




@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(path)
    return path


def test_learning_rate_schedule():
    cfg = InversionConfig(steps=1000, lr=0.1)
    assert learning_rate(0, 1000, cfg) == 0.0
    assert learning_rate(25, 1000, cfg) == pytest.approx(0.05)  # halfway up the 5 % linear ramp
    assert learning_rate(50, 1000, cfg) == pytest.approx(0.1)
    assert learning_rate(500, 1000, cfg) == pytest.approx(0.1)
    assert learning_rate(875, 1000, cfg) == pytest.approx(0.05)  # cosine halfway down the last 25 %
    assert learning_rate(999, 1000, cfg) < 1e-4


def test_multiscale_mse_counts_every_scale():
    a = torch.zeros(2, 3, 32, 32)
    b = torch.ones(2, 3, 32, 32)
    assert multiscale_mse(a, b, size=256, levels=4).tolist() == [4.0, 4.0]  # MSE 1 at 32, 16, 8, 4
    b[1] = 0
    assert multiscale_mse(a, b, size=16, levels=2).tolist() == [2.0, 0.0]


def test_projector_reduces_the_loss_and_reaches_a_generated_target(debug_generator):
    g = debug_generator
    with torch.no_grad():
        z = torch.randn(1, g.config.style_dim, generator=torch.Generator().manual_seed(3))
        target = g.synthesis(g.broadcast(g.mapping(z)))
    calls = []
    res = project(g, target, config=InversionConfig(steps=60), progress=lambda k, n: calls.append((k, n)))
    assert res.w_plus.shape == (1, g.num_ws, g.config.style_dim) and not res.w_plus.requires_grad
    assert res.reconstruction.shape == target.shape
    assert calls[0] == (1, 60) and calls[-1] == (60, 60)
    assert res.losses[-1] < 0.2 * res.losses[0]
    start = multiscale_mse(g.synthesis(g.broadcast(g.w_avg[None])), target, size=256, levels=4)
    final = multiscale_mse(res.reconstruction, target, size=256, levels=4)
    assert final < 0.2 * start
    assert all(p.grad is None for p in g.parameters())  # the generator stays frozen


def test_projector_in_w_space_gives_one_w_broadcast_to_every_layer(debug_generator):
    g = debug_generator
    with torch.no_grad():
        z = torch.randn(2, g.config.style_dim, generator=torch.Generator().manual_seed(5))
        target = g.synthesis(g.broadcast(g.mapping(z)))
    res = project(g, target, config=InversionConfig(steps=40, space="w"))
    assert res.w_plus.shape == (2, g.num_ws, g.config.style_dim)
    assert torch.equal(res.w_plus, res.w_plus[:, :1].expand_as(res.w_plus))  # rows identical: a W latent
    assert res.losses[-1] < 0.5 * res.losses[0]
    free = project(g, target, config=InversionConfig(steps=40))  # W+ (the default): rows differ
    assert not torch.equal(free.w_plus, free.w_plus[:, :1].expand_as(free.w_plus))
    with pytest.raises(ValueError, match="space"):
        InversionConfig(space="z")


class ToyIdentity:
    """A fixed random conv net with unit outputs: stands in for an identity net's embed()."""

    def __init__(self):
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.Flatten(),
                                       torch.nn.LazyLinear(16))
        torch.manual_seed(0)
        self.net(torch.zeros(1, 3, 32, 32))
        self.net.requires_grad_(False)
        self.calls = 0

    def embed(self, img):
        self.calls += 1
        return torch.nn.functional.normalize(self.net(img), dim=-1)


def test_projector_with_identity_term(debug_generator, photo):
    from styleclip.photo.faces import align_photo

    g = debug_generator
    aligned = align_photo(photo, size=g.config.size).image
    from styleclip.util.imaging import from_pil

    ident = ToyIdentity()
    res = project(g, from_pil(aligned), config=InversionConfig(steps=30, lambda_id=1.0), identity=ident)
    assert ident.calls == 31  # target once, then every step
    assert res.losses[-1] < res.losses[0]


def test_invert_photo_uses_the_cache_on_a_second_run(debug_generator, photo, monkeypatch):
    g = debug_generator
    runs = []
    real_project = inversion.project

    def counting_project(*a, **k):
        runs.append(1)
        return real_project(*a, **k)

    monkeypatch.setattr(inversion, "project", counting_project)
    cfg = InversionConfig(steps=20)
    w1, aligned, recon1 = invert_photo(photo, g, config=cfg)
    assert len(runs) == 1
    assert w1.shape == (1, g.num_ws, g.config.style_dim)
    assert aligned.size == (g.config.size, g.config.size) and recon1.shape == (1, 3, 32, 32)
    w2, _, recon2 = invert_photo(photo, g, config=cfg)
    assert len(runs) == 1  # no second optimization
    assert torch.equal(w1, w2) and torch.allclose(recon1, recon2)
    cached = invert_aligned(aligned, g, config=cfg)
    assert cached.cached and cached.method == "optimization" and len(cached.losses) == 20
    invert_photo(photo, g, config=InversionConfig(steps=21))  # other settings: another entry
    assert len(runs) == 2
    invert_photo(photo, g, config=cfg, use_cache=False)
    assert len(runs) == 3


def test_cache_key_depends_on_the_generator_weights(debug_generator, photo):
    from styleclip.factory import debug_generator as build
    from styleclip.photo.faces import align_photo

    aligned = align_photo(photo, size=32).image
    other = build(seed=1)
    k1 = inversion.cache_key(aligned, debug_generator, {"a": 1})
    assert k1 == inversion.cache_key(aligned, build(seed=0), {"a": 1})
    assert k1 != inversion.cache_key(aligned, other, {"a": 1})
    assert k1 != inversion.cache_key(aligned, debug_generator, {"a": 2})
    assert k1 != inversion.cache_key(aligned.transpose(Image.FLIP_LEFT_RIGHT), debug_generator, {"a": 1})


def test_invert_cli_writes_everything(tmp_path, photo):
    from styleclip.cli import app

    out = tmp_path / "inv"
    res = CliRunner().invoke(app, ["invert", str(photo), "--out", str(out), "--steps", "5", "--model", "debug",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    w = torch.load(out / "latent.pt", weights_only=True)
    assert w.shape == (1, 8, 64)
    assert Image.open(out / "aligned.png").size == (32, 32)
    assert Image.open(out / "reconstruction.png").size == (32, 32)
    assert Image.open(out / "side_by_side.png").width > Image.open(out / "side_by_side.png").height
    assert "reconstruction: PSNR" in res.output and "identity" in res.output
    res = CliRunner().invoke(app, ["invert", str(photo), "--out", str(out), "--model", "debug",
                                   "--face-index", "3"])
    assert res.exit_code == 1 and "out of range" in res.output


# ---- e4e -----------------------------------------------------------------------------------------------
def published_e4e_shapes() -> dict:
    """Representative keys of e4e_ffhq_encode.pt's `encoder.*` (WEIGHTS.md section 4), written from the facts:
    IR-SE50 units (3,64) (4,128) (14,256) (3,512), res_layer = BN, conv, PReLU, conv, BN, SE(fc1, fc2);
    shortcut conv+BN only where the depth changes; GradualStyleBlock convs at even indices."""
    s = {
        "input_layer.0.weight": (64, 3, 3, 3), "input_layer.1.running_var": (64,), "input_layer.2.weight": (64,),
        "body.0.res_layer.0.weight": (64,), "body.0.res_layer.1.weight": (64, 64, 3, 3),
        "body.0.res_layer.2.weight": (64,), "body.0.res_layer.5.fc1.weight": (4, 64, 1, 1),
        "body.0.res_layer.5.fc2.weight": (64, 4, 1, 1),
        "body.3.shortcut_layer.0.weight": (128, 64, 1, 1), "body.3.shortcut_layer.1.running_mean": (128,),
        "body.3.res_layer.0.weight": (64,), "body.3.res_layer.3.weight": (128, 128, 3, 3),
        "body.7.shortcut_layer.0.weight": (256, 128, 1, 1), "body.20.res_layer.5.fc1.weight": (16, 256, 1, 1),
        "body.21.shortcut_layer.0.weight": (512, 256, 1, 1), "body.23.res_layer.4.num_batches_tracked": (),
        "latlayer1.weight": (512, 256, 1, 1), "latlayer1.bias": (512,), "latlayer2.weight": (512, 128, 1, 1),
        "styles.17.linear.weight": (512, 512), "styles.17.linear.bias": (512,),
    }
    for i, n_convs in [(0, 4), (2, 4), (3, 5), (6, 5), (7, 6), (17, 6)]:
        for j in range(n_convs):
            s[f"styles.{i}.convs.{2 * j}.weight"] = (512, 512, 3, 3)
            s[f"styles.{i}.convs.{2 * j}.bias"] = (512,)
    return s


def test_e4e_module_has_the_published_layout():
    with torch.device("meta"):
        enc = Encoder4Editing()
    sd = enc.state_dict()
    for key, shape in published_e4e_shapes().items():
        assert tuple(sd[key].shape) == shape, key
    absent = ["body.0.shortcut_layer.0.weight", "body.4.shortcut_layer.0.weight", "styles.2.convs.8.weight",
              "styles.6.convs.10.weight", "styles.18.linear.weight", "body.24.res_layer.0.weight"]
    assert not [k for k in absent if k in sd]
    assert sum(1 for k in sd if k.startswith("body.") and ".shortcut_layer.0.weight" in k) == 3
    encoder_numel = sum(v.numel() for k, v in sd.items() if k != "latent_avg")
    assert 267.05e6 <= encoder_numel < 267.2e6  # "267.1M numel" (WEIGHTS.md)


def _fake_e4e_checkpoint(path, *, extra=None):
    """The published container with random weights. Tensors of equal shape share one storage, so the file
    and the loaded module stay small although the layout is the full 267M-parameter one."""
    with torch.device("meta"):
        shapes = {k: (v.shape, v.dtype) for k, v in Encoder4Editing().state_dict().items() if k != "latent_avg"}
    g = torch.Generator().manual_seed(0)
    pool = {}
    state = {}
    for k, (shape, dtype) in shapes.items():
        kind = (shape, dtype, k.endswith("running_var"))
        if kind not in pool:
            if dtype == torch.long:
                pool[kind] = torch.zeros(shape, dtype=dtype)
            elif k.endswith("running_var"):
                pool[kind] = torch.rand(shape, generator=g) + 0.5
            else:
                pool[kind] = torch.randn(shape, generator=g) * 0.05
        state["encoder." + k] = pool[kind]
    state["decoder.style.1.weight"] = torch.randn(4, 4)  # the bundled generator is ignored
    state.update(extra or {})
    ckpt = {"state_dict": state, "latent_avg": torch.randn(18, 512, generator=g),
            "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": 1024, "start_from_latent_avg": True}}
    torch.save(ckpt, path)
    return ckpt


def test_e4e_checkpoint_loads_strictly_and_encodes(tmp_path):
    path = tmp_path / "e4e_ffhq_encode.pt"
    ckpt = _fake_e4e_checkpoint(path)
    enc = load_e4e(path)
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    assert torch.equal(enc.latent_avg, ckpt["latent_avg"])
    sd = enc.state_dict()
    for key in ["input_layer.0.weight", "body.21.shortcut_layer.0.weight", "styles.9.linear.weight"]:
        assert torch.equal(sd[key], ckpt["state_dict"]["encoder." + key])
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        w_plus = enc(x)
        assert w_plus.shape == (1, 18, 512) and torch.isfinite(w_plus).all()
        # e4e's forward, step by step: w0 from c3, deltas from c3 / p2 / p1, plus latent_avg
        h = enc.input_layer(x)
        feats = []
        for unit in enc.body:
            h = unit(h)
            feats.append(h)
        c1, c2, c3 = feats[6], feats[20], feats[23]
        assert c1.shape[1:] == (128, 64, 64) and c2.shape[1:] == (256, 32, 32) and c3.shape[1:] == (512, 16, 16)
        p2 = torch.nn.functional.interpolate(c3, size=(32, 32), mode="bilinear", align_corners=True) \
            + enc.latlayer1(c2)
        p1 = torch.nn.functional.interpolate(p2, size=(64, 64), mode="bilinear", align_corners=True) \
            + enc.latlayer2(c1)
        w0 = enc.styles[0](c3)
        for i, f in [(0, None), (2, c3), (3, p2), (6, p2), (7, p1), (17, p1)]:
            want = w0 + (enc.styles[i](f) if f is not None else 0) + ckpt["latent_avg"][i]
            torch.testing.assert_close(w_plus[0, i], want[0], rtol=1e-4, atol=1e-4)


def test_e4e_bad_checkpoints(tmp_path):
    path = tmp_path / "bad.pt"
    _fake_e4e_checkpoint(path, extra={"encoder.surprise.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="surprise"):
        load_e4e(path)
    torch.save({"state_dict": {"decoder.x": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="not an e4e checkpoint"):
        load_e4e(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_e4e(path)


def test_encoder_path_on_the_debug_generator(debug_generator, photo, monkeypatch):
    """An e4e-shaped encoder for the debug generator (8 rows of 64): one pass, cached like the projector."""
    from styleclip.photo.faces import align_photo

    g = debug_generator
    torch.manual_seed(0)
    enc = Encoder4Editing(stylegan_size=g.config.size, style_dim=g.config.style_dim).eval().requires_grad_(False)
    monkeypatch.setattr(inversion, "project", lambda *a, **k: pytest.fail("must not optimize"))
    aligned = align_photo(photo, size=g.config.size).image
    res = invert_aligned(aligned, g, encoder=enc)
    assert res.method == "e4e" and not res.cached and res.w_plus.shape == (1, 8, 64)
    again = invert_aligned(aligned, g, encoder=enc)
    assert again.cached and torch.equal(again.w_plus, res.w_plus)
    with pytest.raises(Exception, match="predicts W\\+"):
        encode(Encoder4Editing(stylegan_size=64, style_dim=64), aligned, g)


def test_toy_projector_lr_keeps_the_latent_near_where_the_generator_made_it():
    """The toy W is ~5x narrower per coordinate than FFHQ's, so StyleGAN2's lr 0.1 sends the latent far from
    the one that made a render (where edits fail); the toy default (factory) lands nearer."""
    from styleclip import factory
    from styleclip.photo.invert import w_spread
    from styleclip.sources import latents_from_seeds

    g = factory.load_generator("toy-faces")
    truth = latents_from_seeds(g, [0, 1, 2, 3]).w_plus
    with torch.no_grad():
        target = g.synthesis(truth)
    toy = InversionConfig(**factory.edit_defaults("toy-faces", "projector"))
    assert toy.lr < 0.1

    def error(cfg):
        return float((project(g, target, config=cfg).w_plus - truth).norm(dim=-1).mean()) / w_spread(g)

    assert error(toy) < 0.8 * error(dataclasses.replace(toy, lr=0.1))
