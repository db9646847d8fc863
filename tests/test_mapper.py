"""Latent mapper: architecture parity, official/our checkpoints, Ranger, training (+ resume), inference."""
from __future__ import annotations

import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from styleclip.editors.mapper import MapperConfig, MapperEditor
from styleclip.factory import create_editor
from styleclip.store.mappers import find_mapper, load_mapper, save_mapper, trained_mappers
from styleclip.training.mapper import MapperTrainConfig, MapperTrainer, load_latents, train_mapper
from styleclip.errors import CheckpointError, InputError, WeightsMissingError
from styleclip.nets.mapper import LevelsMapper, SubMapper, level_split
from styleclip.training.ranger import Ranger
from styleclip.types import Latent, Prompt




@pytest.fixture(scope="module")
def debug_clip():
    from styleclip.factory import load_clip

    return load_clip("debug")


def official_state_dict(levels=("course", "medium", "fine"), dim=512, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for lv in levels:
        for i in range(1, 5):
            sd[f"mapper.{lv}_mapping.mapping.{i}.weight"] = torch.randn(dim, dim, generator=g) * 100
            sd[f"mapper.{lv}_mapping.mapping.{i}.bias"] = torch.randn(dim, generator=g)
    sd["decoder.style.1.weight"] = torch.randn(4, 4)  # the embedded generator is ignored
    sd["decoder.noises.noise_0"] = torch.randn(1, 1, 4, 4)
    return sd


def reference_mapper(sd: dict, w: torch.Tensor, split=(4, 4, 10)) -> torch.Tensor:
    """SPEC 2.1 restated: per group PixelNorm over dim 1 (the rows), 4 x (linear with gain 0.01/sqrt(512),
    bias * 0.01, leaky ReLU 0.2 * sqrt 2); a missing level gives zeros."""
    out, start = [], 0
    for lv, n in zip(("course", "medium", "fine"), split):
        x = w[:, start:start + n]
        start += n
        if f"mapper.{lv}_mapping.mapping.1.weight" not in sd:
            out.append(torch.zeros_like(x))
            continue
        x = x / torch.sqrt((x ** 2).mean(dim=1, keepdim=True) + 1e-8)
        for i in range(1, 5):
            wt, b = sd[f"mapper.{lv}_mapping.mapping.{i}.weight"], sd[f"mapper.{lv}_mapping.mapping.{i}.bias"]
            x = F.leaky_relu(x @ (wt * 0.01 / math.sqrt(wt.shape[1])).t() + b * 0.01, 0.2) * math.sqrt(2)
        out.append(x)
    return torch.cat(out, 1)


# ---- architecture ---------------------------------------------------------------------------------------
def test_submapper_param_count():
    assert sum(p.numel() for p in SubMapper(512).parameters()) == 1_050_624
    assert sum(p.numel() for p in LevelsMapper(18, 512).parameters()) == 3 * 1_050_624
    assert sum(p.numel() for p in LevelsMapper(18, 512, no_fine=True).parameters()) == 2 * 1_050_624


def test_level_split_rule():
    assert level_split(18) == (4, 4, 10)  # official, 1024 px
    assert level_split(14) == (4, 4, 6)  # 256 px
    assert level_split(8) == (2, 2, 4)  # 32 px debug generator
    m = LevelsMapper(8, 64)
    assert m.level_rows() == {"coarse": slice(0, 2), "medium": slice(2, 4), "fine": slice(4, 8)}
    with pytest.raises(ValueError):
        LevelsMapper(18, 512, split=(4, 4, 4))
    with pytest.raises(ValueError):
        LevelsMapper(18, 512, no_coarse=True, no_medium=True, no_fine=True)


# ---- official checkpoints -------------------------------------------------------------------------------
def test_official_checkpoint_loads_strictly_and_matches_reference(tmp_path):
    sd = official_state_dict()
    path = tmp_path / "purple_hair.pt"
    torch.save({"state_dict": sd, "opts": {"description": "purple hair", "stylegan_size": 1024,
                                           "no_fine_mapper": False}}, path)
    mf = load_mapper(path)
    assert mf.mapper.levels == ("coarse", "medium", "fine") and mf.prompt == "purple hair"
    ours = mf.mapper.state_dict()
    for k, v in sd.items():
        if k.startswith("mapper."):
            assert torch.equal(ours[k[len("mapper."):]], v)
    w = torch.randn(3, 18, 512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(mf.mapper(w), reference_mapper(sd, w), rtol=1e-5, atol=1e-5)


def test_official_checkpoint_without_fine_keys_turns_fine_off(tmp_path):
    sd = official_state_dict(levels=("course", "medium"))
    path = tmp_path / "mohawk.pt"
    # the stored opts say no_fine_mapper=False (WEIGHTS 10.13): the keys decide
    torch.save({"state_dict": sd, "opts": {"no_fine_mapper": False}}, path)
    mf = load_mapper(path)
    assert mf.mapper.levels == ("coarse", "medium")
    assert mf.prompt == "mohawk"  # from the official file name
    w = torch.randn(2, 18, 512)
    with torch.no_grad():
        out = mf.mapper(w)
    assert torch.equal(out[:, 8:], torch.zeros(2, 10, 512))
    torch.testing.assert_close(out, reference_mapper(sd, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change", ["extra", "missing", "shape", "stylespace"])
def test_official_checkpoint_mismatch_is_a_clear_error(tmp_path, change):
    sd = official_state_dict(levels=("course",), dim=16)
    if change == "extra":
        sd["mapper.course_mapping.mapping.5.weight"] = torch.zeros(16, 16)
    elif change == "missing":
        del sd["mapper.course_mapping.mapping.3.bias"]
    elif change == "shape":
        sd["mapper.course_mapping.mapping.2.bias"] = torch.zeros(17)
    else:
        sd["mapper.mapper_0.mapping.1.weight"] = torch.zeros(16, 16)
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": sd, "opts": {}}, path)
    with pytest.raises(CheckpointError) as e:
        load_mapper(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_truncated_or_garbage_files_are_one_line_checkpoint_errors(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"state_dict": official_state_dict(levels=("course",), dim=16), "opts": {}}, path)
    data = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[:len(data) // 2])
    ours = save_mapper(LevelsMapper(8, 16), tmp_path / "ours.safetensors", info={"prompt": "x"})
    bad2 = tmp_path / "truncated.safetensors"
    bad2.write_bytes(ours.read_bytes()[:-100])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello world, not a checkpoint")
    for p in (bad, bad2, junk, tmp_path / "absent.pt"):
        with pytest.raises(CheckpointError) as e:
            load_mapper(p)
        assert "\n" not in str(e.value)


def test_our_mapper_file_round_trip(tmp_path):
    m = LevelsMapper(8, 64, no_medium=True)
    info = {"prompt": "Bob cut", "generator": {"config": {"size": 32}, "fingerprint": "abc"}}
    path = save_mapper(m, tmp_path / "bob.safetensors", info=info)
    assert not list(tmp_path.glob("*.partial"))
    mf = load_mapper(path)
    assert mf.mapper.levels == ("coarse", "fine") and mf.prompt == "Bob cut"
    assert mf.info["architecture"]["split"] == [2, 2, 4]
    w = torch.randn(2, 8, 64)
    with torch.no_grad():
        assert torch.equal(mf.mapper(w), m(w))


# ---- Ranger ---------------------------------------------------------------------------------------------
def _quadratic_grads(params, target):
    loss = sum(((p - t) ** 2 * (1 + i)).sum() for i, (p, t) in enumerate(zip(params, target)))
    loss.backward()


def test_ranger_equals_radam_with_gc_and_lookahead_reference():
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(6, 5, generator=g), torch.randn(5, generator=g)]
    target = [torch.randn(6, 5, generator=g), torch.randn(5, generator=g)]
    k, alpha, lr = 3, 0.5, 0.05
    ours = [p.clone().requires_grad_() for p in init]
    ref = [p.clone().requires_grad_() for p in init]
    opt = Ranger(ours, lr=lr, k=k, alpha=alpha)
    radam = torch.optim.RAdam(ref, lr=lr, betas=(0.95, 0.999), eps=1e-5)
    slow = [p.detach().clone() for p in init]
    for step in range(1, 14):
        for params, o in ((ours, opt), (ref, radam)):
            o.zero_grad()
            _quadratic_grads(params, target)
        for p in ref:  # gradient centralisation for dim > 1
            if p.grad.ndim > 1:
                p.grad -= p.grad.mean(dim=1, keepdim=True)
        opt.step()
        radam.step()
        if step % k == 0:  # Lookahead
            with torch.no_grad():
                for p, s in zip(ref, slow):
                    s += alpha * (p - s)
                    p.copy_(s)
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the slow weights travel in the optimizer state (for exact resume)
    state = opt.state_dict()["state"][0]
    torch.testing.assert_close(state["slow_buffer"], slow[0])


# ---- training -------------------------------------------------------------------------------------------
def _trainer(debug_generator, clip, **kw):
    cfg = dict(steps=8, num_latents=12, num_val_latents=4, val_interval=4, save_interval=3, image_interval=4)
    cfg.update(kw.pop("cfg", {}))
    return MapperTrainer(debug_generator, clip, "a photo of a cat", config=MapperTrainConfig(**cfg), **kw)


@pytest.mark.parametrize("optimizer,lr,margin", [("ranger", 0.5, 0.0), ("adam", 0.5, 0.005)])
def test_training_lowers_clip_loss(debug_generator, debug_clip, optimizer, lr, margin):
    tr = _trainer(debug_generator, debug_clip, cfg=dict(steps=30, optimizer=optimizer, lr=lr, num_latents=32,
                                                        num_val_latents=8))
    before = tr.validate()["clip"]
    gen_params = {k: v.clone() for k, v in debug_generator.state_dict().items()}
    result = tr.run()
    after = tr.validate()["clip"]
    assert result.step == 30
    assert after < before - margin, (before, after)
    # the generator is untouched and never got gradients
    assert all(torch.equal(v, debug_generator.state_dict()[k]) for k, v in gen_params.items())
    assert all(p.grad is None for p in debug_generator.parameters())
    assert all(p.grad is None for p in debug_clip.parameters())


class Kill(Exception):
    pass


def _killer(at, on_step=None):
    def progress(done, total):
        if on_step is not None:
            on_step(done)
        if done == at:
            raise Kill()
    return progress


def test_resume_after_kill_gives_the_same_weights(debug_generator, debug_clip, tmp_path):
    full = train_mapper(debug_generator, debug_clip, "a photo of a cat", out_dir=tmp_path / "a",
                        config=MapperTrainConfig(steps=8, num_latents=6, num_val_latents=3, val_interval=4,
                                                 save_interval=3, image_interval=4))
    # num_latents=6, batch 2: 3 batches per epoch, so the run crosses epochs (new permutations)
    cfg = MapperTrainConfig(steps=8, num_latents=6, num_val_latents=3, val_interval=4, save_interval=3,
                            image_interval=4)
    with pytest.raises(Kill):
        train_mapper(debug_generator, debug_clip, "a photo of a cat", out_dir=tmp_path / "b", config=cfg,
                     progress=_killer(5))
    state = torch.load(tmp_path / "b" / "train_state.pt", weights_only=True)
    assert state["step"] == 5  # saved on the way out: resume starts exactly there
    with pytest.raises(InputError):  # not without --resume
        train_mapper(debug_generator, debug_clip, "a photo of a cat", out_dir=tmp_path / "b", config=cfg)
    resumed = train_mapper(debug_generator, debug_clip, "a photo of a cat", out_dir=tmp_path / "b", config=cfg,
                           resume=True)
    assert resumed.step == 8
    for k, v in full.mapper.state_dict().items():
        assert torch.equal(v, resumed.mapper.state_dict()[k]), k
    assert resumed.best_val_loss == full.best_val_loss
    for name in ("best.safetensors", "last.safetensors", "images/step_000008.png", "log.jsonl"):
        assert (tmp_path / "b" / name).is_file(), name


def test_resume_from_periodic_checkpoint_after_hard_kill(debug_generator, debug_clip, tmp_path):
    """A kill that leaves no chance to save (SIGKILL): the last periodic checkpoint (step 3) is resumed."""
    cfg = MapperTrainConfig(steps=7, num_latents=6, num_val_latents=2, val_interval=10, save_interval=3,
                            image_interval=10, optimizer="ranger")
    full = train_mapper(debug_generator, debug_clip, "mohawk", config=cfg)
    out = tmp_path / "run"
    backup = tmp_path / "state_at_3.pt"

    def keep(done):
        if done == 3:
            shutil.copy(out / "train_state.pt", backup)

    with pytest.raises(Kill):
        train_mapper(debug_generator, debug_clip, "mohawk", out_dir=out, config=cfg, progress=_killer(5, keep))
    shutil.copy(backup, out / "train_state.pt")  # as if the process had died without its final save
    resumed = train_mapper(debug_generator, debug_clip, "mohawk", out_dir=out, config=cfg, resume=True)
    for k, v in full.mapper.state_dict().items():
        assert torch.equal(v, resumed.mapper.state_dict()[k]), k


def test_resume_refuses_changed_settings(debug_generator, debug_clip, tmp_path):
    cfg = MapperTrainConfig(steps=2, num_latents=4, num_val_latents=1, save_interval=1)
    train_mapper(debug_generator, debug_clip, "mohawk", out_dir=tmp_path, config=cfg)
    with pytest.raises(InputError, match="lr"):
        train_mapper(debug_generator, debug_clip, "mohawk", out_dir=tmp_path, resume=True,
                     config=MapperTrainConfig(steps=3, num_latents=4, num_val_latents=1, lr=0.1))
    # more steps is a valid continuation
    r = train_mapper(debug_generator, debug_clip, "mohawk", out_dir=tmp_path, resume=True,
                     config=MapperTrainConfig(steps=3, num_latents=4, num_val_latents=1, save_interval=1))
    assert r.step == 3


def test_identity_loss_uses_cached_source_embeddings(debug_generator, debug_clip):
    class CountingIdentity:
        calls = 0

        def embed(self, img):
            CountingIdentity.calls += 1
            return F.normalize(F.adaptive_avg_pool2d(img, 4).flatten(1), dim=-1)

    ident = CountingIdentity()
    tr = _trainer(debug_generator, debug_clip, identity=ident,
                  cfg=dict(steps=6, num_latents=4, num_val_latents=0, val_interval=100))
    for _ in range(6):
        out = tr.train_step()
    assert "id" in out and out["id"] >= 0
    # 4 latents: sources embedded once each (at most one call per step for new ones) + one call per step
    assert len(tr._id_cache) == 4
    assert CountingIdentity.calls <= 6 + 4


def test_latent_file_loading(tmp_path):
    w = torch.randn(5, 8, 64)
    torch.save(w, tmp_path / "w.pt")
    assert torch.equal(load_latents(tmp_path / "w.pt", num_ws=8, style_dim=64), w)
    torch.save(w[:, 0], tmp_path / "w1.pt")
    assert load_latents(tmp_path / "w1.pt", num_ws=8, style_dim=64).shape == (5, 8, 64)
    torch.save(torch.randn(5, 18, 512), tmp_path / "big.pt")
    with pytest.raises(InputError, match=r"\[N,8,64\]"):
        load_latents(tmp_path / "big.pt", num_ws=8, style_dim=64)


# ---- inference ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_file(tmp_path_factory, debug_generator, debug_clip):
    out = tmp_path_factory.mktemp("mappers") / "cat"
    train_mapper(debug_generator, debug_clip, "a photo of a cat", out_dir=out,
                 config=MapperTrainConfig(steps=3, num_latents=4, num_val_latents=2, val_interval=3))
    return out / "best.safetensors"


def test_inference_is_deterministic_and_batched(debug_generator, debug_clip, trained_file):
    w = debug_generator.broadcast(debug_generator.mapping(torch.randn(4, 64, generator=torch.Generator()
                                                                      .manual_seed(3)), 0.7))
    ed = create_editor("mapper", debug_generator, debug_clip, mapper=trained_file, batch_size=4)
    r4 = ed.edit(Latent(w), Prompt("a photo of a cat"))
    again = ed.edit(Latent(w), Prompt("a photo of a cat"))
    assert torch.equal(r4.image, again.image) and torch.equal(r4.latent, again.latent)
    singles = create_editor("mapper", debug_generator, debug_clip, mapper=trained_file, batch_size=1)
    r1 = singles.edit(Latent(w), Prompt("a photo of a cat"))
    torch.testing.assert_close(r4.image, r1.image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r4.latent, r1.latent, rtol=1e-6, atol=1e-6)
    assert r4.engine == "mapper" and r4.image.shape == (4, 3, 32, 32)
    assert len(r4.metrics["clip_before"]) == 4 and len(r4.metrics["clip_after"]) == 4
    # the edit is w + 0.1 * M(w)
    mf = load_mapper(trained_file)
    with torch.no_grad():
        torch.testing.assert_close(r4.latent, w + 0.1 * mf.mapper(w))


def test_strength_scales_the_residual(debug_generator, debug_clip, trained_file):
    w = debug_generator.broadcast(debug_generator.mapping(torch.randn(2, 64), 0.7))
    ed = create_editor("mapper", debug_generator, debug_clip, mapper=trained_file)
    zero = ed.edit(Latent(w), Prompt("a photo of a cat", strength=0.0))
    assert torch.equal(zero.latent, w) and torch.equal(zero.image, zero.source_image)
    one = ed.edit(Latent(w), Prompt("a photo of a cat", strength=1.0))
    two = ed.edit(Latent(w), Prompt("a photo of a cat", strength=2.0))
    torch.testing.assert_close(two.latent - w, 2 * (one.latent - w), rtol=1e-5, atol=1e-6)


def test_find_mapper_by_prompt_and_official_names(trained_file, tmp_path, monkeypatch):
    folder = trained_file.parent.parent
    assert find_mapper("A photo of a cat", [folder]) == trained_file
    assert "a_photo_of_a_cat" in trained_mappers([folder])
    with pytest.raises(InputError) as e:
        find_mapper("a wizard hat", [folder])
    msg = str(e.value)
    assert "mohawk (official)" in msg and "a photo of a cat (trained)" in msg and "\n" not in msg
    with pytest.raises(WeightsMissingError, match="mohawk"):
        find_mapper("mohawk", [folder])
    # an official file put in the weights dir is found by name
    monkeypatch.setenv("STYLECLIP_WEIGHTS_DIR", str(tmp_path))
    torch.save({"state_dict": official_state_dict(levels=("course", "medium"), dim=8), "opts": {}},
               tmp_path / "mohawk.pt")
    assert find_mapper("Mohawk", [folder]) == tmp_path / "mohawk.pt"


def test_mapper_for_another_generator_is_refused(debug_generator, debug_clip):
    with pytest.raises(InputError, match="W\\+"):
        MapperEditor(debug_generator, debug_clip, config=MapperConfig(mapper=LevelsMapper(18, 512)))


def test_cli_train_mapper_and_resume(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from styleclip.cli import app

    monkeypatch.chdir(tmp_path)
    args = ["train-mapper", "--prompt", "mohawk", "--model", "debug", "--device", "cpu", "--num-latents", "6",
            "--val-interval", "2", "--save-interval", "2", "--image-interval", "2", "--no-fine"]
    r = CliRunner().invoke(app, args + ["--steps", "2"])
    assert r.exit_code == 0, r.output
    run = tmp_path / "mappers" / "mohawk"
    assert (run / "best.safetensors").is_file() and (run / "images" / "step_000002.png").is_file()
    assert load_mapper(run / "best.safetensors").mapper.levels == ("coarse", "medium")
    r = CliRunner().invoke(app, args + ["--steps", "4", "--resume"])
    assert r.exit_code == 0, r.output
    assert torch.load(run / "train_state.pt", weights_only=True)["step"] == 4
    r = CliRunner().invoke(app, args + ["--steps", "4", "--lr", "0.1", "--resume"])
    assert r.exit_code == 1 and "error:" in r.output


def _fixed_teacher(g, seed=0, scale=0.3):
    """A teacher like a universal mapper's edit for one prompt: a fixed change plus a part that depends on the
    latent (a row-wise tanh of a fixed linear map), the same function on every W+ row as the mappers' MLPs are."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(g.config.style_dim, g.config.style_dim, generator=gen) / g.config.style_dim ** 0.5
    c = torch.randn(g.config.style_dim, generator=gen)
    calls = []

    def teacher(w):
        calls.append(w.shape[0])
        return scale * (c + 0.3 * torch.tanh(w @ a))

    return teacher, calls


def _rel_error(tr, teacher, w):
    with torch.no_grad():
        t = teacher(w)
        return float((tr.cfg.residual_scale * tr.mapper(w) - t).square().sum() / t.square().sum())


def test_distillation_fits_the_teacher_before_the_clip_steps(debug_generator, debug_clip):
    teacher, calls = _fixed_teacher(debug_generator)
    cfg = dict(steps=3, num_latents=64, num_val_latents=8, distill_steps=300, distill_lr=0.3, distill_batch=32)
    cold = _trainer(debug_generator, debug_clip, cfg=cfg)
    w = cold.val_latents
    assert _rel_error(cold, teacher, w) > 0.9  # the random start is nowhere near the teacher
    warm = _trainer(debug_generator, debug_clip, cfg=cfg, teacher=teacher)
    result = warm.run()
    assert len(calls) == 300 + 1 + 1  # 300 fitting batches, the validation check, and this test's
    assert result.step == 3 and warm.distilled["steps"] == 300
    assert warm.distilled["relative_error"] < 0.2, warm.distilled
    assert _rel_error(warm, teacher, w) < 0.3  # three CLIP steps later it is still near the teacher
    info = warm.info()
    assert info["distilled"] == warm.distilled and info["train_seconds"] >= warm.distilled["seconds"]
    cold.run()  # no teacher: no distillation
    assert cold.distilled is None and _rel_error(cold, teacher, w) > 0.9


def test_resumed_warm_run_does_not_fit_again_and_matches(debug_generator, debug_clip, tmp_path):
    teacher, calls = _fixed_teacher(debug_generator)
    cfg = MapperTrainConfig(steps=6, num_latents=8, num_val_latents=2, val_interval=3, save_interval=2,
                            image_interval=6, distill_steps=20)
    full = train_mapper(debug_generator, debug_clip, "a photo of a cat", config=cfg, teacher=teacher)
    with pytest.raises(Kill):
        train_mapper(debug_generator, debug_clip, "a photo of a cat", out_dir=tmp_path / "r", config=cfg,
                     teacher=teacher, progress=_killer(4))
    calls.clear()
    resumed = train_mapper(debug_generator, debug_clip, "a photo of a cat", out_dir=tmp_path / "r", config=cfg,
                           teacher=teacher, resume=True)
    assert calls == []  # the fitted start is in the saved state
    for k, v in full.mapper.state_dict().items():
        assert torch.equal(v, resumed.mapper.state_dict()[k]), k
    assert load_mapper(tmp_path / "r" / "last.safetensors").info["distilled"]["steps"] == 20


def test_init_option_chooses_the_start(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from styleclip import factory
    from styleclip.cli import app

    g, clip = factory.debug_generator(), factory.load_clip("debug")
    assert factory.distill_teacher("none", g, clip, "mohawk")[0] is None
    monkeypatch.chdir(tmp_path)  # no universal mapper for the debug generator here
    teacher, start = factory.distill_teacher("auto", g, clip, "mohawk")
    assert teacher is None and "no universal mapper" in start
    with pytest.raises(InputError, match="--init"):
        factory.distill_teacher("nonsense", g, clip, "mohawk")
    args = ["train-mapper", "--prompt", "mohawk", "--model", "debug", "--device", "cpu", "--num-latents", "6",
            "--steps", "1", "--val-interval", "1"]
    r = CliRunner().invoke(app, args + ["--init", "universal"])
    assert r.exit_code == 1 and "no universal mapper found" in r.output
    r = CliRunner().invoke(app, args + ["--init", "none"])
    assert r.exit_code == 0 and "start: random" in r.output, r.output
