"""The universal (text-conditioned) mapper: network, file format, training (losses fall, resume), engine."""
import pytest
import torch
from typer.testing import CliRunner

from styleclip import factory
from styleclip.encoders import targets as idir
from styleclip.cli import app
from styleclip.editors.universal_mapper import UniversalMapperConfig, UniversalMapperEditor
from styleclip.store.mappers import load_universal_mapper, save_universal_mapper
from styleclip.training.universal_mapper import UniversalMapperTrainer, UniversalTrainConfig, train_universal_mapper
from styleclip.errors import CheckpointError, InputError
from styleclip.nets.universal_mapper import UniversalMapper
from styleclip.types import Latent, Prompt

from helpers import random_universal_mapper


@pytest.fixture(scope="module")
def debug():
    return factory.debug_generator(), factory.load_clip("debug"), factory.load_identity("debug")


def _cfg(**kw):
    return UniversalTrainConfig(**{"steps": 12, "batch_size": 4, "num_latents": 24, "hidden": 32, "warmup": 2,
                                   "save_interval": 4, "log_interval": 2, **kw})


def test_untrained_mapper_is_the_identity_edit_and_gradients_flow():
    m = UniversalMapper(10, 16, 8, hidden=32)
    w, d = torch.randn(3, 10, 16), torch.randn(3, 8)
    assert torch.equal(m(w, d), torch.zeros(3, 10, 16))
    with torch.no_grad():
        m.nets["fine"].layers[-1].weight.normal_()
    out = m(w, d)
    assert torch.equal(out[:, :8], torch.zeros(3, 8, 16)) and out[:, 8:].abs().sum() > 0  # only the fine rows
    out.sum().backward()
    assert all(p.grad is not None for p in m.nets["fine"].parameters())
    with pytest.raises(ValueError, match="delta_e"):
        m(w, torch.randn(2, 8))


def test_file_round_trip_and_bad_files(tmp_path):
    m = UniversalMapper(8, 16, 8, hidden=32)
    for p in m.parameters():
        torch.nn.init.normal_(p)
    path = save_universal_mapper(m, tmp_path / "u.safetensors", info={"residual_scale": 0.5})
    m2, info = load_universal_mapper(path)
    w, d = torch.randn(2, 8, 16), torch.randn(2, 8)
    assert torch.equal(m(w, d), m2(w, d)) and info["residual_scale"] == 0.5
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError):
        load_universal_mapper(tmp_path / "bad.safetensors")


def test_training_lowers_the_loss_and_resume_is_exact(debug, tmp_path):
    g, clip, ident = debug
    trainer = UniversalMapperTrainer(g, clip, ident, config=_cfg(steps=30, lr=1e-2))
    fixed = [trainer.pairs(s) for s in range(3)]
    before = sum(trainer.losses_for(*p)[0].item() for p in fixed)
    trainer.run()
    after = sum(trainer.losses_for(*p)[0].item() for p in fixed)
    assert after < before - 0.05, (before, after)

    full = train_universal_mapper(g, clip, ident, config=_cfg(), out_dir=tmp_path / "a")
    assert (tmp_path / "a" / "log.jsonl").is_file()
    assert all(p.grad is None for p in g.parameters()) and all(p.grad is None for p in clip.parameters())

    part = train_universal_mapper(g, clip, ident, config=_cfg(steps=8), out_dir=tmp_path / "b")
    assert part.step == 8
    with pytest.raises(InputError, match="--resume"):
        train_universal_mapper(g, clip, ident, config=_cfg(), out_dir=tmp_path / "b")
    with pytest.raises(InputError, match="different settings"):
        train_universal_mapper(g, clip, ident, config=_cfg(lr=0.5), out_dir=tmp_path / "b", resume=True)
    resumed = train_universal_mapper(g, clip, ident, config=_cfg(), out_dir=tmp_path / "b", resume=True)
    assert resumed.step == 12
    for (k, a), b in zip(full.mapper.state_dict().items(), resumed.mapper.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_engine_text_and_image_prompts(debug, tmp_path, monkeypatch):
    monkeypatch.setattr(idir, "BANK_SIZE", 64)
    g, clip, ident = debug
    m, path = random_universal_mapper(g, tmp_path / "u.safetensors")
    editor = factory.create_editor("mapper", g, clip, ident, mapper=str(path))
    assert isinstance(editor, UniversalMapperEditor)
    z = torch.randn(3, g.config.style_dim, generator=torch.Generator().manual_seed(0))
    w = g.mapping_plus(z, truncation_psi=0.7)
    r = editor.edit(Latent(w), Prompt("a photo of a cat", strength=2.0))
    d = idir.image_direction(g, clip, "a photo of a cat")
    expect = w + 2.0 * m(w, d.expand(3, -1))
    assert torch.allclose(r.latent, expect, atol=1e-5)
    assert torch.allclose(r.image, g.synthesis(expect), atol=1e-5)
    ref = g.synthesis(w[:1] * 0.5)
    r = editor.edit(Latent(w), Prompt(image=ref))
    e_src = clip.encode_image(g.synthesis(w))
    d_img = torch.nn.functional.normalize(clip.encode_image(ref) - e_src, dim=-1)
    assert torch.allclose(r.latent, w + m(w, d_img), atol=1e-5)
    # a floor on the size of the change: small changes are scaled up to it, larger ones left alone
    sizes = (expect - w).norm(dim=(1, 2)) / 2.0
    floor = float(sizes.median())
    r = UniversalMapperEditor(g, clip, ident, config=UniversalMapperConfig(mapper=m, min_change=floor)).edit(
        Latent(w), Prompt("a photo of a cat"))
    got = (r.latent - w).norm(dim=(1, 2))
    assert torch.allclose(got, sizes.clamp_min(floor), rtol=1e-4)
    assert torch.allclose(torch.nn.functional.normalize((r.latent - w).flatten(1), dim=1),
                          torch.nn.functional.normalize((expect - w).flatten(1), dim=1), atol=1e-5)  # same direction
    with pytest.raises(ValueError, match="min_change"):
        UniversalMapperConfig(min_change=-1.0)
    auto = UniversalMapperEditor(g, clip, ident, config=UniversalMapperConfig(mapper=m, auto=True))
    r = auto.edit(Latent(w), Prompt("a photo of a cat"))
    assert len(r.metrics["strength"]) == 3 and len(r.metrics["gain_reached"]) == 3


def test_cli_train_universal_then_edit(tmp_path, monkeypatch):
    monkeypatch.setattr(idir, "BANK_SIZE", 64)
    runner = CliRunner()
    out = tmp_path / "uni"
    r = runner.invoke(app, ["train-mapper", "--universal", "--model", "debug", "--steps", "3", "--batch-size", "2",
                            "--num-latents", "8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "universal.safetensors").is_file()
    r = runner.invoke(app, ["train-mapper", "--universal", "--prompt", "x", "--model", "debug", "--out", str(out)])
    assert r.exit_code == 1 and "leave out --prompt" in r.output
    r = runner.invoke(app, ["edit", "--model", "debug", "--engine", "mapper", "--mapper",
                            str(out / "universal.safetensors"), "--prompt", "a photo of a cat", "--seeds", "0-1",
                            "--out", str(tmp_path / "edits")])
    assert r.exit_code == 0, r.output
    assert "strength" in r.output and (tmp_path / "edits" / "a-photo-of-a-cat-universal" / "seed1_edited.png").is_file()


def test_s_space_latent_is_a_clear_error(debug):
    """A --beta edit (or a global one) writes an S-space latent; the mapper needs W+ and says so."""
    from styleclip import stylespace as ss

    g, clip, _ = debug
    mapper = UniversalMapper(g.num_ws, g.config.style_dim, ss.clip_dim(clip), hidden=16)
    editor = UniversalMapperEditor(g, clip, config=UniversalMapperConfig(mapper=mapper))
    styles = g.styles(g.broadcast(g.w_avg.unsqueeze(0)))
    with pytest.raises(InputError, match="S space"):
        editor.edit(Latent(None, styles=tuple(styles)), Prompt("a face with a mohawk"))


def test_teacher_is_the_editors_whole_wplus_change_and_a_mapper_learns_it(debug, tmp_path, monkeypatch):
    """`train-mapper --init universal`: the per-prompt mapper starts from the universal mapper's edit."""
    from styleclip.training.mapper import MapperTrainConfig, train_mapper

    monkeypatch.setattr(idir, "BANK_SIZE", 64)
    g, clip, ident = debug
    m, path = random_universal_mapper(g, tmp_path / "u.safetensors")
    teacher, start = factory.distill_teacher(str(path), g, clip, "a photo of a cat")
    assert str(path) in start
    z = torch.randn(3, g.config.style_dim, generator=torch.Generator().manual_seed(1))
    w = g.mapping_plus(z, truncation_psi=0.7)
    edited = factory.create_editor("mapper", g, clip, ident, mapper=str(path)).edit(Latent(w),
                                                                                      Prompt("a photo of a cat"))
    assert torch.allclose(teacher(w), edited.latent - w, atol=1e-5)
    res = train_mapper(g, clip, "a photo of a cat", config=MapperTrainConfig(
        steps=1, num_latents=64, num_val_latents=8, val_interval=1, distill_steps=300, distill_batch=32),
        teacher=teacher)
    with torch.no_grad():
        err = (0.1 * res.mapper(w) - teacher(w)).square().sum() / teacher(w).square().sum()
    assert err < 0.3, float(err)
