"""Pivotal tuning: the tuned copy reproduces the photo better, the base stays, deltas cache and reload."""
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from styleclip.store import registry as pretrained
from styleclip.photo import pti
from styleclip.errors import InputError, WeightsMissingError
from styleclip.photo.fidelity import FidelityTarget, invert_face, plan, psnr
from styleclip.util.imaging import from_pil
from styleclip.photo.invert import InversionConfig, project
from styleclip.toy.render import Attributes, render, sample_identity

FAST = pti.PTIConfig(steps=30, lr=1e-3, locality_every=5)


@pytest.fixture(scope="module")
def toy():
    from styleclip.factory import load_generator, load_identity

    return load_generator("toy-faces"), load_identity("toy-faces")


@pytest.fixture(scope="module")
def aligned():
    """A toy render (not made by the generator) as the aligned photo crop."""
    rng = np.random.default_rng(11)
    return Image.fromarray(render(sample_identity(rng), Attributes(hair_style="afro", glasses="glasses"), size=64))


@pytest.fixture(scope="module")
def pivot(toy, aligned):
    return project(toy[0], from_pil(aligned), config=InversionConfig(steps=20))


def test_tuning_beats_the_pivot_and_leaves_the_base_alone(toy, aligned, pivot):
    g, identity = toy
    before = {k: v.clone() for k, v in g.state_dict().items()}
    target = from_pil(aligned)
    tuned, losses = pti.tune(g, pivot.w_plus, target, config=FAST, perceptual=pti.identity_term(identity))
    after = g.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    assert tuned is not g
    assert losses[-1] < losses[0]
    with torch.no_grad():
        gain = psnr(tuned.synthesis(pivot.w_plus), target) - psnr(pivot.reconstruction, target)
    assert float(gain) > 1.0
    base = dict(g.named_parameters())
    for name, p in tuned.named_parameters():  # the mapping network is not tuned
        assert torch.equal(p, base[name]) == name.startswith("style."), name
    assert not any(p.requires_grad for p in tuned.parameters())


def test_locality_term_is_zero_for_the_untuned_copy(toy, pivot):
    g, _ = toy
    import copy

    same = copy.deepcopy(g)
    loss = pti._locality(g, same, pivot.w_plus, 1.0, torch.Generator().manual_seed(0), None)
    assert float(loss) == 0.0


def test_deltas_cache_under_the_user_cache_and_reload(toy, aligned, pivot):
    g, identity = toy
    target = from_pil(aligned)
    kw = dict(pivot_key="photo-key", config=FAST, perceptual=pti.identity_term(identity), perceptual_name="identity")
    tuned, cached = pti.tune_cached(g, pivot.w_plus, target, **kw)
    assert not cached
    files = list((pretrained.cache_dir() / "pti").glob("*.safetensors"))
    assert len(files) == 1 and not list(files[0].parent.glob("*.tmp"))
    d = pti.delta(g, tuned)
    assert d and all(not k.startswith("style.") and v.dtype == torch.float16 for k, v in d.items())
    again, cached = pti.tune_cached(g, pivot.w_plus, target, **kw)
    assert cached
    with torch.no_grad():
        a, b = tuned.synthesis(pivot.w_plus), again.synthesis(pivot.w_plus)
    assert float(psnr(a, b)) > 50  # float16 deltas: the same image
    with pytest.raises(ValueError, match="unknown"):
        pti.apply_delta(g, {"nope.weight": torch.zeros(1)})


def test_auto_stops_at_the_first_inverter_reaching_the_target(toy, aligned):
    g, identity = toy
    common = dict(identity=identity, projector=InversionConfig(steps=10), pti=pti.PTIConfig(steps=10, lr=1e-3),
                  use_cache=False)
    easy = invert_face(aligned, g, method="auto", target=FidelityTarget(psnr=0.0, identity=0.0), **common)
    assert [f.method for f in easy.tried] == ["projector"] and easy.generator is g
    hard = invert_face(aligned, g, method="auto", target=FidelityTarget(psnr=99.0, identity=0.0), **common)
    assert [f.method for f in hard.tried] == ["projector", "pti"]
    assert hard.fidelity.psnr == max(f.psnr for f in hard.tried)
    assert hard.report()["tried"][0]["method"] == "projector" and hard.fidelity.identity is not None
    with pytest.raises(InputError, match="e4e"):
        plan("e4e", has_encoder=False)
    assert plan("pti", has_encoder=True) == ["e4e", "pti"]


def test_engines_edit_with_the_tuned_generator(toy, pivot):
    from styleclip.factory import create_editor, load_clip
    from styleclip.types import Latent, Prompt

    g, _ = toy
    tuned = pti.apply_delta(g, {"to_rgb1.bias": torch.full((1, 3, 1, 1), 0.5, dtype=torch.float16)})
    editor = create_editor("global", g, load_clip("toy-faces"), beta=0.3)
    latent, prompt = Latent(pivot.w_plus), Prompt("a face with blond hair", strength=0.0)
    base_img = editor.edit(latent, prompt).image
    tuned_img = pti.with_generator(editor, tuned).edit(latent, prompt).image
    with torch.no_grad():
        torch.testing.assert_close(tuned_img, tuned.synthesis(pivot.w_plus), atol=1e-5, rtol=0)
    assert not torch.allclose(base_img, tuned_img) and editor.generator is g


def test_lpips_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "lpips", None)  # not installed
    with pytest.raises(WeightsMissingError, match="pip install lpips"):
        pti.lpips_loss()
    monkeypatch.setitem(sys.modules, "lpips", types.ModuleType("lpips"))  # installed, VGG weights absent
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsMissingError, match=pti.LPIPS_BACKBONE):
        pti.lpips_loss()


def test_lr_schedule_warms_up_then_decays():
    cfg = pti.PTIConfig(steps=100, lr=1e-3, warmup=10, cosine=True)
    assert pti.lr_at(cfg, 0) == pytest.approx(1e-4 * (0.5 * (1 + np.cos(0))))  # lr / warmup at the first step
    assert pti.lr_at(cfg, 9) == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 9 / 100)))  # ramp done
    assert pti.lr_at(cfg, 50) == pytest.approx(5e-4)  # cosine halfway
    assert pti.lr_at(cfg, 99) < 1e-5
    assert pti.lr_at(pti.PTIConfig(lr=1e-3), 0) == pti.lr_at(pti.PTIConfig(lr=1e-3), 349) == 1e-3  # PTI's: constant
    short = pti.PTIConfig(steps=5, lr=1e-3, warmup=30)  # a ramp longer than the run still reaches lr
    assert pti.lr_at(short, 4) == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        pti.PTIConfig(warmup=-1)


def test_toy_defaults_tune_without_the_locality_term_as_pti_does():
    """PTI's published default: no locality term (on toy photos it cost 3.6 dB of gain, docs/photo-editing.md);
    the term stays available (locality_every > 0) and is tested above."""
    from styleclip.factory import edit_defaults

    cfg = pti.PTIConfig(**edit_defaults("toy-faces", "pti"))
    assert cfg.locality_every == 0 and cfg.warmup < cfg.steps and cfg.cosine
