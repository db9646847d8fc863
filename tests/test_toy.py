"""The toy-faces training recipes: batches, resumable loops, exported weights, evaluation functions, CLI."""
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from styleclip.cli import app
from styleclip.errors import CheckpointError
from styleclip.toy import data as D
from styleclip.toy import assets as A
from styleclip.toy.training import train as T
from styleclip.toy.render import ATTRIBUTE_VALUES, render


def test_batches_are_deterministic_labelled_and_augmented():
    a, b = D.sample_batch(3, 7, 6), D.sample_batch(3, 7, 6)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, D.sample_batch(3, 8, 6).images)
    assert a.images.shape == (6, 3, 64, 64) and a.images.min() >= -1 and a.images.max() <= 1
    for i, att in enumerate(a.attributes):
        for name in D.ATTRIBUTES:
            assert ATTRIBUTE_VALUES[name][int(a.labels[name][i])] == getattr(att, name)
        exact = torch.from_numpy(render(a.identities[i], att).copy()).permute(2, 0, 1).float() / 127.5 - 1
        assert torch.equal(a.images[i], exact)
    aug, aug2 = D.sample_batch(3, 7, 6, augment=True), D.sample_batch(3, 7, 6, augment=True)
    assert torch.equal(aug.images, aug2.images)
    diff = (aug.images - a.images).abs().mean()
    assert 0.005 < diff < 0.3  # changed, but still the same faces


def test_augmentation_parts():
    x = D.sample_batch(0, 0, 4).images
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    off = dict(max_shift=0, blur_p=0.0, noise_max=0.0, brightness=0.0, contrast=0.0)
    assert torch.allclose(D.augment_images(x, g(), **off), x, atol=1e-6)
    blurred = D.augment_images(x, g(), **{**off, "blur_p": 1.0})
    assert torch.allclose(blurred.mean(), x.mean(), atol=1e-3) and (blurred - x).abs().mean() > 1e-3
    shifted = D.augment_images(x, g(), **{**off, "max_shift": 2})
    # every shifted image equals the original moved by at most 2 px somewhere in its interior
    for i in range(4):
        ok = any(torch.allclose(shifted[i, :, 2:-2, 2:-2], x[i, :, 2 + dy:62 + dy, 2 + dx:62 + dx], atol=1e-6)
                 for dy in range(-2, 3) for dx in range(-2, 3))
        assert ok


def test_identity_batches_and_pairs():
    b = D.identity_batch(0, 0, 3, views=2)
    assert b.identity_ids.tolist() == [0, 0, 1, 1, 2, 2]
    assert b.identities[0] == b.identities[1] and b.identities[0] != b.identities[2]
    a, c, same = D.verification_pairs(6)
    assert a.shape == c.shape == (6, 3, 64, 64) and same.tolist() == [True, False] * 3


def test_eval_functions_on_trivial_cases():
    labels = torch.tensor([0, 2, 1, 2])
    assert T.accuracy_from_scores(torch.eye(3)[labels], labels) == 1.0
    assert T.accuracy_from_scores(torch.eye(3)[(labels + 1) % 3], labels) == 0.0
    same = torch.tensor([True, False] * 8)
    assert T.verification_accuracy_from_scores(same.float(), same)["verification_accuracy"] == 1.0
    assert T.verification_accuracy_from_scores(torch.zeros(16), same)["verification_accuracy"] == 0.5
    prompts = T.zero_shot_prompts()
    assert set(prompts) == set(ATTRIBUTE_VALUES)
    for name, per_value in prompts.items():
        assert len(per_value) == len(ATTRIBUTE_VALUES[name]) and all(p and all(s.strip() for s in p)
                                                                      for p in per_value)

    batch = D.sample_batch(0, 0, 12)

    class Oracle(torch.nn.Module):  # reads the true labels: accuracy must be exactly 1
        def forward(self, img):
            return {a: torch.eye(len(ATTRIBUTE_VALUES[a]))[batch.labels[a]] for a in D.ATTRIBUTES}

    assert T.classifier_accuracy(Oracle(), batch) == {a: 1.0 for a in D.ATTRIBUTES}


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", T.TASKS)
def test_resume_gives_identical_weights(tmp_path, name):
    kw = dict(tiny=True, batch_size=4, eval_size=8, warmup=3)
    quiet = lambda s: None  # noqa: E731
    T.run_training(T.make_task(name, **kw), tmp_path / "a", steps=4, export=False, evaluate=False, log=quiet)
    T.run_training(T.make_task(name, **kw), tmp_path / "b", steps=2, export=False, evaluate=False, log=quiet)
    r = T.run_training(T.make_task(name, **kw), tmp_path / "b", steps=4, resume=True, export=False, log=quiet)
    assert r["step"] == 4 and r["eval"]
    a = T.load_checkpoint(tmp_path / "a" / T.CHECKPOINT)
    b = T.load_checkpoint(tmp_path / "b" / T.CHECKPOINT)
    assert _states_equal(a["model"], b["model"])
    init = T.make_task(name, **kw).build().state_dict()
    assert not _states_equal(a["model"], init)  # it did train
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()


def test_anneal_decays_the_learning_rate_to_zero_by_the_last_step(tmp_path):
    kw = dict(tiny=True, batch_size=4, eval_size=8, warmup=1)
    T.run_training(T.make_task("classifier", **kw), tmp_path / "a", steps=4, anneal=True, export=False,
                   evaluate=False, log=lambda s: None)
    a = T.load_checkpoint(tmp_path / "a" / T.CHECKPOINT)
    assert a["meta"]["anneal_to"] == 4
    lr = T.make_task("classifier", **kw).lr
    # the last step (index 3 of 4) ran at lr * (1 + cos(3 pi / 4)) / 2
    assert a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(lr * 0.5 * (1 + math.cos(3 * math.pi / 4)))
    with pytest.raises(ValueError, match="anneal needs --steps"):
        T.run_training(T.make_task("classifier", **kw), tmp_path / "b", minutes=1, anneal=True)


def test_resume_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        T.run_training(T.make_task("classifier", tiny=True), tmp_path, steps=1, resume=True)
    T.run_training(T.make_task("classifier", tiny=True, batch_size=2), tmp_path, steps=1, export=False,
                   evaluate=False, log=lambda s: None)
    with pytest.raises(CheckpointError, match="not 'identity'"):
        T.run_training(T.make_task("identity", tiny=True), tmp_path, steps=2, resume=True)
    with pytest.raises(ValueError, match="steps"):
        T.run_training(T.make_task("identity", tiny=True), tmp_path)
    with pytest.raises(ValueError, match="unknown toy task"):
        T.make_task("vae")


def _fit_one_batch(task, steps: int):
    """A fresh model trained `steps` steps on the task's batch 0: (model, loss before, loss after)."""
    model = task.build()
    opt = task.optimizer(model)
    first = float(task.loss(model, 0)[0].detach())
    for _ in range(steps):
        loss, _ = task.loss(model, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, first, float(task.loss(model, 0)[0].detach())


def test_clip_loss_falls_and_exported_clip_loads_through_clip_encoder(tmp_path):
    task = T.make_task("clip", tiny=True, batch_size=8, eval_size=8, lr=2e-3, warmup=1)
    model, first, last = _fit_one_batch(task, 15)  # the same batch: the contrastive loss must fall
    assert last < first - 0.3
    T.export_fp16(model, tmp_path / "clip.safetensors", task.config)
    clip = A.load_toy_clip(tmp_path)
    ref = T.ClipEncoder.from_config(task.config, state_dict=model.state_dict())
    assert torch.allclose(clip.encode_text("a face with a mohawk"), ref.encode_text("a face with a mohawk"),
                          atol=2e-2)
    acc = T.evaluate_exported("clip", tmp_path, n=8)["zero_shot"]
    assert set(acc) == set(ATTRIBUTE_VALUES) and all(0 <= v <= 1 for v in acc.values())


def test_partial_captions_name_a_subset_and_mark_every_matching_image():
    """A partial caption names some attributes ('a bald face', 'a face'); every image of the batch that shows
    all of them is its positive, its own image included; full captions name every attribute."""
    import numpy as np

    from styleclip.toy.render import Attributes, partial_caption

    b = D.sample_batch(0, 3, 32)
    caps, match = T.partial_caption_targets(b, np.random.default_rng(1), 0.5)
    assert len(caps) == 32 and match.shape == (32, 32)
    assert bool(match.diagonal().eq(1).all())
    assert any(c != full for c, full in zip(caps, b.captions))  # some replaced
    generic = [k for k, c in enumerate(caps) if c in ("a face", "a cartoon of a face", "a drawing of a face")]
    for k in generic:  # names nothing: every image matches
        assert bool(match[:, k].eq(1).all())
    for k, c in enumerate(caps):
        if c == b.captions[k]:  # a full caption: only images with the same attributes (up to background)
            same = [j for j in range(32) if all(b.labels[a][j] == b.labels[a][k] for a in D.ATTRIBUTES
                                                if a not in ("background", "hair_colour"))]
            assert set(torch.nonzero(match[:, k]).flatten().tolist()) <= set(same)
    rng = np.random.default_rng(0)
    bald = Attributes("bald", "blond", "smiling", "none", False, "pink")
    texts = {partial_caption(bald, rng)[0] for _ in range(200)}
    assert "a bald face" in texts and "a face" in texts
    assert not any("blond" in t or "glasses" in t or "beard" in t for t in texts)  # unseen or absent: unnamed


def test_clip_loss_with_partial_captions_falls():
    task = T.make_task("clip", tiny=True, batch_size=8, lr=1e-3, partial=0.5)
    assert task.extra_meta() == {"partial": 0.5}
    _, first, last = _fit_one_batch(task, 15)
    assert last < first - 0.3


def test_cli_train_eval_and_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cls"
    r = runner.invoke(app, ["toy", "train", "classifier", "--tiny", "--steps", "2", "--batch-size", "4",
                            "--lr", "1e-3", "--eval-size", "8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "classifier.safetensors").is_file() and json.loads((out / "eval.json").read_text())["step"] == 2
    r = runner.invoke(app, ["toy", "train", "classifier", "--tiny", "--steps", "3", "--eval-size", "8",
                            "--out", str(out), "--resume"])
    assert r.exit_code == 0 and "resumed classifier at step 2" in r.output
    meta = T.load_checkpoint(out / T.CHECKPOINT)["meta"]
    assert meta["lr"] == 1e-3 and meta["batch_size"] == 4  # --resume keeps the run's settings
    r = runner.invoke(app, ["toy", "eval", "classifier", "--weights", str(out), "--n", "8"])
    assert r.exit_code == 0, r.output
    acc = json.loads(r.output)["accuracy"]
    assert set(acc) == set(ATTRIBUTE_VALUES)
    r = runner.invoke(app, ["toy", "train", "vae", "--steps", "1", "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "unknown toy task" in r.output
    r = runner.invoke(app, ["toy", "eval", "identity", "--weights", str(tmp_path / "none")])
    assert r.exit_code == 1 and "error:" in r.output
    r = runner.invoke(app, ["toy", "train", "classifier", "--partial-captions", "0.5", "--steps", "1"])
    assert r.exit_code == 1 and "clip recipe only" in r.output
    clip = tmp_path / "clip"
    r = runner.invoke(app, ["toy", "train", "clip", "--tiny", "--steps", "1", "--batch-size", "4", "--eval-size", "8",
                            "--partial-captions", "0.25", "--out", str(clip)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["toy", "train", "clip", "--tiny", "--steps", "2", "--eval-size", "8", "--out", str(clip),
                            "--resume"])
    assert r.exit_code == 0, r.output
    assert T.load_checkpoint(clip / T.CHECKPOINT)["meta"]["partial"] == 0.25  # kept by --resume


def test_generator_code_samples_the_render_distribution():
    from styleclip.toy.generator import CODE_DIMS, params_from_z, render_z

    z = torch.randn(3000, 128, generator=torch.Generator().manual_seed(0))
    params = params_from_z(z)
    scaled = params_from_z(2 * z)  # a function of z / rms(z)
    assert [a for _, a in scaled] == [a for _, a in params]
    assert all(abs(i.face_width - j.face_width) < 1e-6 for (i, _), (j, _) in zip(params, scaled))
    styles = [a.hair_style for _, a in params]
    for v in ATTRIBUTE_VALUES["hair_style"]:
        assert abs(styles.count(v) / 3000 - 1 / 6) < 0.03
    assert abs(sum(a.beard for _, a in params) / 3000 - 0.3) < 0.03
    widths = [i.face_width for i, _ in params]
    assert 0.22 <= min(widths) < 0.225 and 0.285 < max(widths) <= 0.29
    assert CODE_DIMS == 15
    img = render_z(z[:2])
    assert img.shape == (2, 3, 64, 64) and img.min() >= -1
    with pytest.raises(ValueError, match="z must be"):
        params_from_z(torch.zeros(2, 4))


@pytest.mark.parametrize("disentangled", [True, False])
def test_constructed_mapping_computes_the_code(disentangled):
    from styleclip.toy import generator as G

    task = T.make_task("generator", tiny=True, disentangled=disentangled)
    g = task.build()  # build() constructs the mapping
    q = task.q
    z = torch.randn(4096, g.config.style_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        w = g.mapping(z)
    f = G.code(z)[0]
    assert torch.allclose(G.w_of_code(f, q), f @ q.T + G.code_offset(q))
    assert w.min() > 0  # the leaky ReLU output is exact only for positive W, hence the offset
    err = (w - G.w_of_code(f, q)).pow(2).mean()
    assert err < 1e-3, err  # a fitted MLP of the same size left 0.058
    read = (w - G.code_offset(q)) @ q  # back to features; compare the one-hot blocks' argmax
    col = 0
    for _, kind, spec in G.CODE:
        width = len(spec) if kind == "c" else 1
        if kind == "c":
            agree = (read[:, col:col + width].argmax(1) == f[:, col:col + width].argmax(1)).float().mean()
            assert agree > 0.995, (spec, agree)
        col += width
    assert col == G.FEATURES
    with torch.no_grad():
        assert torch.allclose(g.w_avg, w.mean(0), atol=0.05)


def test_style_channels_each_read_one_factor():
    """Under the recipe's masks every style channel reads one render factor, also after optimizer steps, so a
    change of one factor's code moves only that factor's channels of S."""
    from styleclip.toy import generator as G

    task = T.make_task("generator", tiny=True, batch_size=4, lr=1e-2, warmup=1)
    g = task.build()
    opt = task.optimizer(g)
    for step in range(2):
        loss, _ = task.loss(g, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        task.after_step(g)
    factors = torch.tensor(G.feature_factors())
    for affine, _ in task._masks:
        used = affine.weight[:, :G.FEATURES] != 0
        assert (affine.weight[:, G.FEATURES:] == 0).all()
        for row in used:  # every channel's nonzero weights lie within one factor's features
            assert len(set(factors[row].tolist())) == 1
    f = G.code(torch.randn(8, g.config.style_dim, generator=torch.Generator().manual_seed(4)))[0]
    hair = [j for j, k in enumerate(G.feature_factors()) if G.CODE[k][0] == "hair_colour"]
    f2 = f.clone()
    f2[:, hair] = f2[:, hair].flip(1)  # another hair colour
    with torch.no_grad():
        s1, s2 = (g.styles(g.broadcast(G.w_of_code(x, task.q))) for x in (f, f2))
    for (a, b), (_, mask) in zip(zip(s1, s2), task._masks):
        moved = ((a - b).abs() > 1e-6).any(0)
        owner = mask[:, hair].bool().any(1)  # the channels given to hair colour
        assert not (moved & ~owner).any()  # nothing outside the hair-colour channels moved
    assert any(((a - b).abs() > 1e-6).any() for a, b in zip(s1, s2))


def test_generator_export_keeps_the_mapping_in_fp32(tmp_path):
    from safetensors import safe_open

    task = T.make_task("generator", tiny=True)
    T.export_fp16(task.build(), tmp_path / "generator.safetensors", task.config, task.keep_fp32)
    with safe_open(str(tmp_path / "generator.safetensors"), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes["style.1.weight"] == "F32" and dtypes["conv1.conv.modulation.bias"] == "F32"
    assert dtypes["conv1.conv.weight"] == "F16"


def test_generator_decoder_loss_falls():
    task = T.make_task("generator", tiny=True, batch_size=8, lr=5e-3, warmup=1, eval_size=8)
    g, first, last = _fit_one_batch(task, 20)
    assert last < 0.7 * first
    ev = task.evaluate(g)
    assert ev["psnr"] > 0 and "classifier_all_attributes" not in ev  # 16 px: no classifier reading


def test_shipped_classifier_and_identity_weights():
    from styleclip.encoders.identity import IdentityLoss

    batch = D.eval_set(64)
    acc = T.classifier_accuracy(A.load_toy_classifier(), batch)
    assert min(acc.values()) >= 0.95, acc
    net = A.load_toy_identity()
    assert not any(p.requires_grad for p in net.parameters())
    pairs = D.verification_pairs(64)
    assert T.identity_verification(net, pairs)["verification_accuracy"] >= 0.8
    img = batch.images[:2].clone().requires_grad_(True)
    loss = IdentityLoss(net, batch.images[:2])(img)
    assert torch.allclose(loss, torch.zeros(2), atol=1e-4)
    IdentityLoss(net, batch.images[:2])(img + 0.1 * torch.randn_like(img)).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_shipped_clip_reads_every_attribute_and_its_text_directions_find_them():
    """Zero-shot among an attribute's values, and the engines' text directions (value prompt minus the neutral
    'a face') rank the faces showing each value first. Glasses and beard are left out of the zero-shot check:
    their absent value is the prompt that omits them, and captions that name only some attributes (as prompts
    do) make omission mean 'unspecified' (measured on 512: 73% and 78%, the rest 100%)."""
    clip = A.load_toy_clip()
    batch = D.eval_set(256, size=clip.input_size)
    ev = T.clip_evaluation(clip, batch)
    assert set(ev["zero_shot"]) == set(ATTRIBUTE_VALUES)
    assert min(v for a, v in ev["zero_shot"].items() if a not in ("glasses", "beard")) >= 0.95, ev
    assert ev["direction_auc_min"] >= 0.95, ev  # measured on 512: >= 0.997 (before partial captions: 0.48)
    assert T.auc(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0])) == 0.625  # 2 wins, 1 tie of 4


def test_init_from_exported_weights(tmp_path):
    quiet = lambda s: None  # noqa: E731
    kw = dict(tiny=True, batch_size=4, eval_size=8, warmup=3)
    T.run_training(T.make_task("identity", **kw), tmp_path / "a", steps=2, evaluate=False, log=quiet)
    exported = A.read_safetensors(tmp_path / "a" / "identity.safetensors")
    r = T.run_training(T.make_task("identity", **kw), tmp_path / "b", steps=2, init_from=tmp_path / "a",
                       start_step=2, export=False, evaluate=False, log=quiet)
    assert r["step"] == 2  # no step taken: the checkpoint holds exactly the exported weights
    ck = T.load_checkpoint(tmp_path / "b" / T.CHECKPOINT)
    assert _states_equal(ck["model"], exported) and ck["meta"]["warm_start"] == 2
    r = T.run_training(T.make_task("identity", **kw), tmp_path / "b", steps=3, resume=True, export=False,
                       evaluate=False, log=quiet)
    assert r["step"] == 3
