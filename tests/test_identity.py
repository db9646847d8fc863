"""Identity nets: IR-SE50 key layout and strict loading, preprocessing, the identity loss, load_identity."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from styleclip.errors import CheckpointError, StyleClipError, WeightsMissingError
from styleclip.factory import load_identity
from styleclip.encoders.identity import (ArcFaceIdentity, DebugIdentity, FaceNetIdentity, IdentityLoss, face_crop, load_strict)
from styleclip.nets.arcface import IRSE50

# Independently written facts about the published model_ir_se50.pth (WEIGHTS.md 5, TreB1eN Backbone(112,50,'ir_se'))
EXPECTED_SHAPES = {
    "input_layer.0.weight": (64, 3, 3, 3),
    "input_layer.1.running_var": (64,),
    "input_layer.2.weight": (64,),                              # PReLU
    "body.0.res_layer.0.weight": (64,),                         # BN(in) first
    "body.0.res_layer.1.weight": (64, 64, 3, 3),
    "body.0.res_layer.2.weight": (64,),
    "body.0.res_layer.3.weight": (64, 64, 3, 3),
    "body.0.res_layer.5.fc1.weight": (4, 64, 1, 1),             # SE, reduction 16, no bias
    "body.0.res_layer.5.fc2.weight": (64, 4, 1, 1),
    "body.3.shortcut_layer.0.weight": (128, 64, 1, 1),          # stage 2: channels change -> conv shortcut
    "body.3.shortcut_layer.1.weight": (128,),
    "body.7.shortcut_layer.0.weight": (256, 128, 1, 1),
    "body.21.shortcut_layer.0.weight": (512, 256, 1, 1),
    "body.23.res_layer.3.weight": (512, 512, 3, 3),
    "body.23.res_layer.5.fc1.weight": (32, 512, 1, 1),
    "output_layer.0.weight": (512,),                            # BN2d
    "output_layer.3.weight": (512, 25088),                      # Linear(512*7*7, 512)
    "output_layer.3.bias": (512,),
    "output_layer.4.weight": (512,),                            # BN1d, affine
    "output_layer.4.bias": (512,),
    "output_layer.4.running_mean": (512,),
}
NO_SHORTCUT_PARAMS = [0, 1, 2, 4, 5, 6, 8, 22, 23]  # first stage (in == depth) and non-first units: max-pool


@pytest.fixture(scope="module")
def irse50_state():
    torch.manual_seed(0)
    net = IRSE50()
    for m in net.modules():  # non-trivial BN statistics so that a wrong load would show
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_irse50_key_layout(irse50_state):
    sd = irse50_state
    assert len(sd) == 397
    n_params = sum(p.numel() for p in IRSE50().parameters())
    assert abs(n_params - 43.8e6) < 0.05e6, n_params
    for k, shape in EXPECTED_SHAPES.items():
        assert tuple(sd[k].shape) == shape, k
    for i in NO_SHORTCUT_PARAMS:
        assert not any(k.startswith(f"body.{i}.shortcut_layer.") for k in sd)
    assert sorted({int(k.split(".")[1]) for k in sd if k.startswith("body.")}) == list(range(24))
    assert not any(".bias" in k for k in sd if ".res_layer.1." in k or ".res_layer.3." in k)  # convs: no bias


def test_irse50_strict_load_from_file(irse50_state, tmp_path):
    path = tmp_path / "model_ir_se50.pth"
    torch.save(irse50_state, path)
    ident = ArcFaceIdentity.from_file(path)
    for k, v in ident.net.state_dict().items():
        assert torch.equal(v, irse50_state[k]), k
    assert not ident.training and not any(p.requires_grad for p in ident.parameters())
    # old files without num_batches_tracked load too
    old = {k: v for k, v in irse50_state.items() if not k.endswith("num_batches_tracked")}
    assert len(old) == 397 - 54  # 54 BatchNorms: stem, 2 per unit, 3 shortcuts, 2 in the head
    torch.save(old, path)
    ArcFaceIdentity.from_file(path)
    # a real mismatch is named
    bad = dict(irse50_state)
    bad.pop("body.5.res_layer.1.weight")
    bad["output_layer.3.bias"] = torch.zeros(7)
    bad["extra.key"] = torch.zeros(1)
    torch.save(bad, path)
    with pytest.raises(CheckpointError) as e:
        ArcFaceIdentity.from_file(path)
    msg = str(e.value)
    assert "body.5.res_layer.1.weight" in msg and "extra.key" in msg and "output_layer.3.bias" in msg


def test_irse50_embedding_and_loss(irse50_state):
    """Batch 1 at the net's own scale (256 px input -> crop -> 112): unit norm, 0 for identical, grows."""
    ident = ArcFaceIdentity.from_state_dict(irse50_state)
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
    direction = torch.randn(1, 3, 256, 256, generator=g)
    emb = ident.embed(img)
    assert emb.shape == (1, 512) and torch.allclose(emb.norm(dim=-1), torch.ones(1), atol=1e-5)
    loss = IdentityLoss(ident, img)
    with torch.no_grad():  # the forward is the expensive part on CPU: one batch of three edits
        losses = loss(img + torch.tensor([0.0, 0.2, 1.5]).view(3, 1, 1, 1) * direction).tolist()
    assert abs(losses[0]) < 1e-5
    assert losses[0] < losses[1] < losses[2], losses


def test_face_crop_matches_styleclip_recipe():
    img = torch.randn(2, 3, 1024, 1024)
    x = F.adaptive_avg_pool2d(img, (256, 256))[:, :, 35:223, 32:220]
    assert torch.allclose(face_crop(img, 112), F.adaptive_avg_pool2d(x, (112, 112)), atol=1e-6)
    x256 = torch.randn(1, 3, 256, 256)  # already 256: no pooling before the crop
    assert torch.equal(face_crop(x256, 188), x256[:, :, 35:223, 32:220])
    with pytest.raises(ValueError, match=r"\[N,3,H,W\]"):
        face_crop(torch.randn(3, 64, 64), 112)


def test_debug_identity_interface_and_loss():
    ident = DebugIdentity()
    assert torch.equal(DebugIdentity().net.fc.weight, ident.net.fc.weight)  # seeded
    assert not torch.equal(DebugIdentity(seed=1).net.fc.weight, ident.net.fc.weight)
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 3, 64, 48, generator=g) * 2 - 1  # any size, even non-square
    emb = ident.embed(img)
    assert emb.shape == (3, 512) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    ref = img[:1]
    loss = IdentityLoss(ident, ref)
    direction = torch.randn(1, 3, 64, 48, generator=g)
    values = [loss(ref + eps * direction).item() for eps in (0.0, 0.2, 0.6, 2.0)]
    assert abs(values[0]) < 1e-6 and values[0] < values[1] < values[2] < values[3], values
    per_sample = loss(img)  # a single reference broadcasts over the batch, one loss per sample
    assert per_sample.shape == (3,) and per_sample[0].abs() < 1e-6 and (per_sample[1:] > 0).all()


def test_identity_loss_gradients_reach_image_only():
    ident = DebugIdentity()
    ref = torch.rand(2, 3, 32, 32) * 2 - 1
    loss_fn = IdentityLoss(ident, ref)
    img = (ref + 0.3 * torch.randn_like(ref)).requires_grad_(True)
    loss_fn(img).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in ident.parameters())
    ident.train()
    assert not ident.training  # frozen nets stay in eval mode
    with pytest.raises(ValueError, match="reference"):
        loss_fn(torch.rand(3, 3, 32, 32))


def test_facenet_strict_load_and_preprocessing(tmp_path):
    torch.manual_seed(0)
    net = FaceNetIdentity.build(8631)
    sd = net.state_dict()
    assert len(sd) == 716 and sd["logits.weight"].shape == (8631, 512)  # the published vggface2 layout
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(sd, path)
    ident = load_identity(str(path))  # detected as facenet by its key names
    assert isinstance(ident, FaceNetIdentity)
    img = torch.rand(1, 3, 256, 256) * 2 - 1
    x = ident.preprocess(img)
    pixels = (face_crop(img, 160) + 1) * 127.5  # [0, 255]
    assert x.shape == (1, 3, 160, 160) and torch.allclose(x, (pixels - 127.5) / 128, atol=1e-5)
    with torch.no_grad():
        emb = ident.embed(img)
    assert emb.shape == (1, 512) and torch.allclose(emb.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_load_identity_names(irse50_state, tmp_path, monkeypatch):
    assert isinstance(load_identity("debug"), DebugIdentity)
    # ffhq -> arcface-ir-se50 via the registry: missing weights give the one clear message (offline in tests)
    with pytest.raises(WeightsMissingError) as e:
        load_identity("ffhq")
    assert "model_ir_se50.pth" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(WeightsMissingError, match="20180402-114759-vggface2.pt"):
        load_identity("facenet")
    # once the file is in a weights folder it is found
    wdir = tmp_path / "w"
    wdir.mkdir()
    torch.save(irse50_state, wdir / "model_ir_se50.pth")
    monkeypatch.setenv("STYLECLIP_WEIGHTS_DIR", str(wdir))
    assert isinstance(load_identity("ffhq"), ArcFaceIdentity)
    assert isinstance(load_identity(wdir / "model_ir_se50.pth"), ArcFaceIdentity)
    with pytest.raises(StyleClipError, match="unknown identity net"):
        load_identity("nope")
    with pytest.raises(StyleClipError, match="not an identity net"):
        load_identity("stylegan2-ffhq-1024")


def test_load_strict_reports_one_line():
    with pytest.raises(CheckpointError) as e:
        load_strict(torch.nn.Linear(2, 3), {"weight": torch.zeros(3, 3)}, source="x.pt")
    assert str(e.value).startswith("x.pt:") and "missing keys bias" in str(e.value) and "\n" not in str(e.value)
