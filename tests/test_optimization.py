import math

import pytest
import torch
from typer.testing import CliRunner

from styleclip.cli import app
from styleclip.editors.optimization import OptimizationConfig, OptimizationEditor, learning_rate
from styleclip.factory import create_editor, load_clip
from styleclip.sources import latents_from_seeds
from styleclip.types import Latent, Prompt

runner = CliRunner()


@pytest.fixture(scope="module")
def clip():
    return load_clip("debug")


@pytest.fixture
def source(debug_generator):
    return latents_from_seeds(debug_generator, [0, 1], truncation=0.7)


class FakeIdentity:
    """A stand-in identity net: unit-normalised downsampled pixels (differentiable, frozen)."""

    def embed(self, img):
        return torch.nn.functional.normalize(torch.nn.functional.avg_pool2d(img, 4).flatten(1), dim=-1)


def test_schedule_matches_official_formula():
    assert learning_rate(0, 300, 0.1) == 0.0
    assert learning_rate(150, 300, 0.1) == pytest.approx(0.1)
    assert learning_rate(6, 300, 0.1) == pytest.approx(0.1 * 6 / 15)
    t = 290 / 300
    assert learning_rate(290, 300, 0.1) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(math.pi * (1 - t) / 0.25)))


def test_loss_falls_latent_moves_and_networks_stay_frozen(debug_generator, clip, source):
    g = debug_generator
    before_g = {k: v.clone() for k, v in g.state_dict().items()}
    before_c = {k: v.clone() for k, v in clip.state_dict().items()}
    editor = OptimizationEditor(g, clip, FakeIdentity(), config=OptimizationConfig(steps=40, id_lambda=0.1))
    seen = []
    result = editor.edit(source, Prompt("a face with a mohawk"), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (40, 40) and len(seen) == 40
    m = result.metrics
    assert all(a > b for a, b in zip(m["clip_after"], m["clip_before"]))
    assert not torch.equal(result.latent, source.w_plus)
    assert result.image.shape == (2, 3, 32, 32) and result.latent.shape == source.w_plus.shape
    assert "identity_similarity" in m and all(-1 <= s <= 1 for s in m["identity_similarity"])
    for k, v in g.state_dict().items():
        assert torch.equal(v, before_g[k]), k
    for k, v in clip.state_dict().items():
        assert torch.equal(v, before_c[k]), k
    assert all(p.grad is None for p in list(g.parameters()) + list(clip.parameters()))


def test_l2_pulls_back_toward_the_source(debug_generator, clip, source):
    dist = {}
    for lam in (0.0, 5.0):
        editor = OptimizationEditor(debug_generator, clip, config=OptimizationConfig(steps=30, l2_lambda=lam))
        res = editor.edit(source, Prompt("mohawk"))
        dist[lam] = (res.latent - source.w_plus).square().sum().item()
    assert dist[5.0] < 0.5 * dist[0.0]


def test_same_seed_same_result_and_batch_independence(debug_generator, clip, source):
    cfg = OptimizationConfig(steps=15)
    a = OptimizationEditor(debug_generator, clip, config=cfg).edit(source, Prompt("blond hair"))
    b = OptimizationEditor(debug_generator, clip, config=cfg).edit(source, Prompt("blond hair"))
    assert torch.equal(a.latent, b.latent)
    single = OptimizationEditor(debug_generator, clip, config=cfg).edit(
        Latent(source.w_plus[1:]), Prompt("blond hair"))
    assert torch.allclose(single.latent[0], a.latent[1], atol=1e-5)


def test_free_generation_and_style_space(debug_generator, clip, source):
    ed = create_editor("optimize", debug_generator, clip, steps=10, mode="free_generation")
    res = ed.edit(source, Prompt("glasses"))
    assert res.metrics["final_losses"].keys() == {"clip", "total"}
    ed = create_editor("optimize", debug_generator, clip, steps=10, space="styles", frame_every=5)
    res = ed.edit(source, Prompt("glasses"))
    styles = debug_generator.styles(source.w_plus)
    for s, e, layer in zip(styles, res.latent, debug_generator.layers):
        assert torch.equal(s, e) == (layer.kind == "torgb")
    assert len(res.frames) == 3


def test_bad_inputs(debug_generator, clip):
    with pytest.raises(ValueError, match="empty"):
        Prompt("  ")
    with pytest.raises(ValueError, match="shape"):
        Latent(torch.zeros(8, 64))
    with pytest.raises(ValueError, match="NaN"):
        Latent(torch.full((1, 8, 64), float("nan")))
    with pytest.raises(ValueError, match=r"expected \[N,8,64\]"):
        OptimizationEditor(debug_generator, clip).edit(Latent(torch.zeros(1, 6, 64)), Prompt("x"))


def test_cli_edit_end_to_end(tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["edit", "--model", "debug", "--prompt", "mohawk", "--seeds", "0-1", "--steps", "6",
                            "--out", str(out), "--gif", "--clip-views", "2"])
    assert r.exit_code == 0, r.output
    for label in ("seed0", "seed1"):
        for suffix in ("_edited.png", "_before_after.png", "_latent.pt", ".gif"):
            assert (out / "mohawk-optimize" / f"{label}{suffix}").is_file()  # the run's own folder
    assert "CLIP similarity" in r.output
    lat = torch.load(out / "mohawk-optimize" / "seed0_latent.pt")
    assert lat.shape == (1, 8, 64)
    # the saved latent is a valid source for another edit
    r = runner.invoke(app, ["edit", "--model", "debug", "--prompt", "glasses", "--latent",
                            str(out / "mohawk-optimize" / "seed0_latent.pt"), "--steps", "2", "--out", str(tmp_path / "again")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "again" / "glasses-optimize" / "seed0_edited.png").is_file()


@pytest.mark.parametrize("case", ["empty_prompt", "bad_shape", "missing_file", "not_a_tensor", "bad_views",
                                  "views_for_global", "compile_for_global"])
def test_cli_edit_errors_are_one_line(tmp_path, case):
    args = ["edit", "--model", "debug", "--prompt", "mohawk", "--steps", "2", "--out", str(tmp_path / "o")]
    if case == "empty_prompt":
        args[args.index("mohawk")] = "   "
    elif case == "bad_shape":
        torch.save(torch.zeros(3, 5, 7), tmp_path / "bad.pt")
        args += ["--latent", str(tmp_path / "bad.pt")]
    elif case == "missing_file":
        args += ["--latent", str(tmp_path / "nope.pt")]
    elif case == "bad_views":
        args += ["--clip-views", "-2"]
    elif case == "views_for_global":
        args = [a for a in args if a not in ("--steps", "2")] + ["--engine", "global", "--clip-views", "4"]
    elif case == "compile_for_global":
        args = [a for a in args if a not in ("--steps", "2")] + ["--engine", "global", "--compile"]
    else:
        (tmp_path / "text.pt").write_text("hello")
        args += ["--latent", str(tmp_path / "text.pt")]
    r = runner.invoke(app, args)
    assert r.exit_code == 1
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_edit_from_a_photo(tmp_path):
    """The whole photo comes back with the face edited; figures printed and saved; --crop-only; no face."""
    import json

    import numpy as np
    import skimage.data
    from PIL import Image

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    args = ["edit", "--model", "debug", "--image", str(photo), "--prompt", "mohawk", "--steps", "3",
            "--invert-steps", "5", "--pti-steps", "3", "--target-psnr", "60", "--out", str(tmp_path / "o")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "face 0: projector: PSNR" in r.output and "pti: PSNR" in r.output and "<- used" in r.output
    out = tmp_path / "o" / "mohawk-optimize"  # the run's own folder
    edited = Image.open(out / "astronaut_edited.png")
    assert edited.size == (512, 512)  # the whole photo
    meta = json.loads((out / "astronaut_edit.json").read_text())
    a, b = np.asarray(edited), np.asarray(Image.open(photo))
    quad = np.asarray(meta["faces"][0]["quad"])
    x0, y0 = np.floor(quad.min(0)).astype(int)
    x1, y1 = np.ceil(quad.max(0)).astype(int)
    outside = np.ones(a.shape[:2], bool)
    outside[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = False
    assert outside.mean() > 0.3 and (a[outside] == b[outside]).all() and (a != b).any()
    pair = Image.open(out / "astronaut_face0_before_after.png")
    assert pair.width > 2.5 * pair.height  # original / reconstruction / edit
    inv = meta["faces"][0]["inversion"]
    assert inv["method"] == "pti" and [t["method"] for t in inv["tried"]] == ["projector", "pti"]
    assert inv["psnr"] > 0 and "identity" in inv and meta["size"] == [512, 512]
    assert not list(out.glob(".partial-*"))
    r = runner.invoke(app, args + ["--crop-only", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "(cached)" in r.output and Image.open(tmp_path / "c" / "mohawk-optimize" / "astronaut_edited.png").size == (32, 32)
    # a CMYK JPEG stored sideways with an EXIF orientation: read upright, the whole photo comes back upright
    sideways = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(skimage.data.astronaut()[:, :400]).rotate(90, expand=True).convert("CMYK").save(sideways, exif=exif)
    r = runner.invoke(app, ["edit", "--model", "debug", "--image", str(sideways), "--prompt", "mohawk", "--steps", "2",
                            "--invert", "projector", "--invert-steps", "2", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "s" / "mohawk-optimize" / "sideways_edited.png").size == (400, 512)
    cat = tmp_path / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(cat)
    r = runner.invoke(app, args[:4] + [str(cat)] + args[5:-1] + [str(tmp_path / "n")])
    assert r.exit_code == 1 and "no face" in r.output.lower()
    assert not (tmp_path / "n").exists() or not any((tmp_path / "n").iterdir())


def test_cli_edit_global_engine(tmp_path, debug_generator):
    from styleclip import stylespace as ss

    clip = load_clip("debug")
    stats = ss.compute_stats(debug_generator, n=2000)
    rel = ss.compute_relevance(debug_generator, clip, stats, n_images=3)
    rel_path = tmp_path / "fs3.npy"
    rel.save(rel_path)
    r = runner.invoke(app, ["edit", "--engine", "global", "--model", "debug", "--prompt", "a face with a mohawk",
                            "--relevance", str(rel_path), "--alpha", "6", "--beta", "0.05", "--seeds", "0-1",
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "channels, beta 0.05, alpha 6" in r.output
    assert (tmp_path / "o" / "a-face-with-a-mohawk-global" / "seed1_before_after.png").is_file()
    r = runner.invoke(app, ["edit", "--engine", "global", "--model", "debug", "--prompt", "mohawk",
                            "--relevance", str(rel_path), "--beta", "0.99", "--out", str(tmp_path / "o2")])
    assert r.exit_code == 1 and "beta too high" in r.output


def test_cli_train_mapper_then_edit_with_it(tmp_path):
    run = tmp_path / "mohawk"
    r = runner.invoke(app, ["train-mapper", "--model", "debug", "--prompt", "mohawk", "--steps", "4",
                            "--num-latents", "8", "--val-interval", "2", "--save-interval", "2", "--out", str(run)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["edit", "--engine", "mapper", "--model", "debug", "--mapper", str(run), "--prompt",
                            "mohawk", "--seeds", "0-1", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "mohawk-mapper" / "seed1_edited.png").is_file() and "CLIP similarity" in r.output
    r = runner.invoke(app, ["edit", "--engine", "mapper", "--model", "debug", "--prompt", "purple beard",
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "official mappers are for FFHQ 1024" in r.output  # not offered at 32 px


def test_shifted_views_are_whole_pixel_shifts_with_gradients(monkeypatch):
    from styleclip.encoders.views import shifted_views, view_offsets

    img = torch.randn(2, 3, 16, 16, requires_grad=True)
    offsets = view_offsets(5, 0.125, 16, 16, torch.Generator().manual_seed(0))
    views = shifted_views(img, offsets, 0.125)
    assert views.shape == (10, 3, 16, 16)
    padded = torch.nn.functional.pad(img.detach(), (2, 2, 2, 2), mode="reflect")
    crops = {(dy, dx): padded[:, :, dy:dy + 16, dx:dx + 16] for dy in range(5) for dx in range(5)}
    moved = 0
    for v in views.detach().view(5, 2, 3, 16, 16):  # each view: one shift of the whole batch, exact pixels
        match = [k for k, c in crops.items() if torch.equal(c, v)]
        assert match, "a view is not a whole-pixel shift of the batch"
        moved += match[0] != (2, 2)
    assert moved >= 3
    grad_out = torch.randn_like(views)
    views.backward(grad_out)
    assert img.grad is not None and img.grad.abs().sum() > 0
    again = view_offsets(5, 0.125, 16, 16, torch.Generator().manual_seed(0))
    assert torch.equal(shifted_views(img.detach(), again, 0.125), views.detach())
    assert view_offsets(0, 0.125, 16, 16, torch.Generator()) is None
    none = view_offsets(3, 0.0, 16, 16, torch.Generator())
    assert torch.equal(shifted_views(img.detach(), none, 0.0), img.detach().repeat(3, 1, 1, 1))
    # the indexed crops a compiled step takes (offsets as a tensor): the same views and gradients
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    img2 = img.detach().clone().requires_grad_(True)
    indexed = shifted_views(img2, offsets, 0.125)
    assert torch.equal(indexed.detach(), views.detach())
    indexed.backward(grad_out)
    assert torch.allclose(img2.grad, img.grad, atol=1e-5)


def test_clip_views_reproducible_batch_independent_and_different_from_plain(debug_generator, clip, source):
    cfg = OptimizationConfig(steps=10, clip_views=4)
    a = OptimizationEditor(debug_generator, clip, config=cfg).edit(source, Prompt("blond hair"))
    b = OptimizationEditor(debug_generator, clip, config=cfg).edit(source, Prompt("blond hair"))
    assert torch.equal(a.latent, b.latent)
    single = OptimizationEditor(debug_generator, clip, config=cfg).edit(Latent(source.w_plus[1:]), Prompt("blond hair"))
    assert torch.allclose(single.latent[0], a.latent[1], atol=1e-5)
    plain = OptimizationEditor(debug_generator, clip, config=OptimizationConfig(steps=10)).edit(
        source, Prompt("blond hair"))
    assert not torch.allclose(plain.latent, a.latent)
    with pytest.raises(ValueError, match="clip_views"):
        OptimizationConfig(clip_views=-1)


def test_start_from_the_universal_mappers_edit(debug_generator, clip, source, tmp_path, monkeypatch):
    """init 'universal': the latent starts at the universal mapper's whole W+ edit (with lr 0 it stays there), the
    L2 term still measures the distance to the source, and S-space latents or a missing mapper are clear errors."""
    from styleclip.encoders import targets as idir
    from styleclip.errors import InputError
    from helpers import random_universal_mapper

    monkeypatch.setattr(idir, "BANK_SIZE", 64)
    g = debug_generator
    m, path = random_universal_mapper(g, tmp_path / "u.safetensors")
    w = source.w_plus
    d = idir.image_direction(g, clip, "glasses")
    change = m(w, d.expand(len(w), -1)).detach()
    floor = float(change.norm(dim=(1, 2)).max()) * 2  # every change scaled up to this W+ norm
    start = w + change * (floor / change.norm(dim=(1, 2), keepdim=True))
    ed = create_editor("optimize", g, clip, steps=3, lr=0.0, init="universal", init_mapper=str(path),
                       init_min_change=floor)
    res = ed.edit(source, Prompt("glasses"))
    assert torch.allclose(res.latent, start, atol=1e-5)
    l2 = float(((start - w) ** 2).sum(dim=(1, 2)).mean())
    assert res.metrics["final_losses"]["l2"] == pytest.approx(l2, rel=1e-4)
    plain = create_editor("optimize", g, clip, steps=3, lr=0.0).edit(source, Prompt("glasses"))
    assert torch.equal(plain.latent, w)
    moved = create_editor("optimize", g, clip, steps=5, lr=0.05, init="universal", init_mapper=str(path)).edit(
        source, Prompt("glasses"))
    assert not torch.allclose(moved.latent, w + change, atol=1e-4)  # then optimized from there
    in_s = create_editor("optimize", g, clip, steps=3, lr=0.0, space="styles", init="universal",
                         init_mapper=str(path), init_min_change=floor)
    styles = in_s.edit(source, Prompt("glasses"))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(styles.latent, g.styles(start)))
    with pytest.raises(InputError, match="W\\+ latent"):
        in_s.edit(Latent(None, styles=g.styles(w)), Prompt("glasses"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="no universal mapper found"):
        create_editor("optimize", g, clip, init="universal")
    with pytest.raises(InputError, match="init"):
        OptimizationConfig(init="mapper")


@pytest.mark.skipif(__import__("styleclip.util.runtime", fromlist=["x"]).compile_backend_missing("cpu") is not None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_step_edits_as_the_eager_step(debug_generator, clip, source):
    cfg = dict(steps=6, id_lambda=0.1, clip_views=2)  # views: their offsets change every step
    eager = OptimizationEditor(debug_generator, clip, FakeIdentity(), config=OptimizationConfig(**cfg))
    compiled = OptimizationEditor(debug_generator, clip, FakeIdentity(),
                                  config=OptimizationConfig(compile=True, **cfg))
    a = eager.edit(source, Prompt("a face with a mohawk"))
    from torch._dynamo.utils import counters

    breaks = sum(counters["graph_break"].values())
    b = compiled.edit(source, Prompt("a face with a mohawk"))
    assert sum(counters["graph_break"].values()) == breaks  # one graph: no step falls back to eager parts
    fn = compiled._compiled
    assert fn is not None
    moved = (a.latent - source.w_plus).abs().max()
    assert moved > 1e-2
    assert (b.latent - a.latent).abs().max() < 1e-3 * moved
    assert torch.allclose(b.image, a.image, atol=1e-4)
    assert b.metrics["final_losses"] == pytest.approx(a.metrics["final_losses"], rel=1e-4)
    graphs = counters["stats"]["unique_graphs"]
    c = compiled.edit(Latent(source.w_plus.flip(0)), Prompt("a face with a mohawk"))  # reuses the compiled step
    assert compiled._compiled is fn
    assert torch.allclose(c.latent.flip(0), b.latent, atol=1e-5)
    compiled.edit(source, Prompt("a face with a mohawk", strength=2.0))  # another strength: no recompiling
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.parametrize("kw", [dict(space="styles"), dict(checkpoint_min_res=16), dict(mode="free_generation"),
                                dict(clip_views=3, bf16=True)])
def test_every_step_mode_traces_as_one_graph(debug_generator, clip, source, kw):
    """What --compile compiles is one graph in every mode (a break would recompile per layer or per step)."""
    from styleclip.encoders.views import view_offsets

    g = debug_generator
    editor = OptimizationEditor(g, clip, FakeIdentity(), config=OptimizationConfig(steps=2, id_lambda=0.1, **kw))
    w = source.w_plus
    if editor.config.space == "styles":
        sources = g.styles(w)
        variables = [s.clone().requires_grad_(layer.kind == "conv") for s, layer in zip(sources, g.layers)]
    else:
        sources, variables = [w], [w.clone().requires_grad_(True)]
    offsets = view_offsets(editor.config.clip_views, 0.125, g.config.size, g.config.size, torch.Generator())
    text = clip.encode_text(["a face with a mohawk"])
    with torch.no_grad():
        id_source = FakeIdentity().embed(g.synthesis(w))
    report = torch._dynamo.explain(editor._objective)(variables, sources, text, id_source, torch.tensor(1.0), offsets)
    torch._dynamo.reset()
    assert report.graph_break_count == 0, [r.reason for r in report.break_reasons]
    assert report.graph_count == 1


def test_compile_without_a_backend_is_a_clear_error(debug_generator, clip, source, monkeypatch):
    import shutil

    from styleclip.errors import InputError

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="C\\+\\+ compiler"):
        OptimizationEditor(debug_generator, clip, config=OptimizationConfig(steps=2, compile=True))
