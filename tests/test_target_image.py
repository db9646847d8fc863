"""Reference-image prompts (`--target-image`), image-side prompt directions and auto strength."""
import re

import pytest

from styleclip.util.imaging import load_reference_image
import torch
from typer.testing import CliRunner

from styleclip import factory
from styleclip.encoders import targets as idir
from styleclip.cli import app
from styleclip.editors.auto_strength import AutoStrengthConfig, pick_strengths
from styleclip.errors import InputError
from styleclip.util.imaging import to_pil
from styleclip.types import Latent, Prompt


@pytest.fixture(scope="module")
def debug():
    return factory.debug_generator(), factory.load_clip("debug")


@pytest.fixture
def small_bank(monkeypatch):
    monkeypatch.setattr(idir, "BANK_SIZE", 200)


def _w(g, seeds):
    z = torch.stack([torch.randn(g.config.style_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
    with torch.no_grad():
        return g.mapping_plus(z, truncation_psi=0.7)


def test_prompt_needs_text_or_image():
    with pytest.raises(ValueError, match="empty"):
        Prompt()
    p = Prompt(image=torch.zeros(1, 3, 8, 8))
    assert p.label == "target image"
    with pytest.raises(ValueError, match=r"\[1,3,H,W\]"):
        Prompt(image=torch.zeros(3, 8, 8))


def test_reference_image_file(tmp_path):
    img = torch.rand(1, 3, 40, 30) * 2 - 1
    to_pil(img[0]).save(tmp_path / "ref.png")
    x = load_reference_image(tmp_path / "ref.png", 16)
    assert x.shape == (1, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    with pytest.raises(InputError, match="does not exist"):
        load_reference_image(tmp_path / "nope.png", 16)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        load_reference_image(tmp_path / "bad.png", 16)


def test_optimization_toward_a_reference_image(debug):
    g, clip = debug
    w = _w(g, [1, 2])
    with torch.no_grad():
        ref = g.synthesis(_w(g, [7]))
    editor = factory.create_editor("optimize", g, clip, steps=15, lr=0.05)
    r = editor.edit(Latent(w), Prompt(image=ref))
    target = clip.encode_image(ref)
    before = (clip.encode_image(g.synthesis(w)) * target).sum(-1)
    assert torch.allclose(torch.tensor(r.metrics["clip_before"]), before, atol=1e-5)
    assert all(a > b + 0.01 for a, b in zip(r.metrics["clip_after"], r.metrics["clip_before"])), r.metrics


def test_global_direction_toward_a_reference_image():
    g, clip = factory.load_generator("toy-faces"), factory.load_clip("toy-faces")
    w = _w(g, [1, 2, 3, 4])
    with torch.no_grad():
        ref = g.synthesis(_w(g, [11]))
        src = g.synthesis(w)
    editor = factory.create_editor("global", g, clip, beta=0.3, compute_missing=False)
    p = Prompt(image=ref, strength=3.0)
    dt = editor.reference_direction(p, src)
    expect = torch.nn.functional.normalize(clip.encode_image(ref)[0] - clip.encode_image(src).mean(0), dim=0)
    assert torch.allclose(dt, expect, atol=1e-5)
    r = editor.edit(Latent(w), p)
    gain = torch.tensor(r.metrics["clip_after"]) - torch.tensor(r.metrics["clip_before"])
    assert gain.mean() > 0.05, r.metrics


def test_per_prompt_mapper_refuses_an_image_target(debug):
    from styleclip.editors.mapper import MapperEditor
    from styleclip.nets.mapper import LevelsMapper

    from styleclip.editors.mapper import MapperConfig

    g, clip = debug
    editor = MapperEditor(g, clip, config=MapperConfig(mapper=LevelsMapper(g.num_ws, g.config.style_dim)))
    with pytest.raises(InputError, match="universal"):
        editor.edit(Latent(_w(g, [0])), Prompt(image=torch.zeros(1, 3, 32, 32)))


def test_image_direction_separates_matching_faces(small_bank):
    g, clip = factory.load_generator("toy-faces"), factory.load_clip("toy-faces")
    bank = idir.face_bank(g, clip)
    d, raw = idir.prompt_direction(clip, bank, "a face wearing sunglasses")
    assert abs(float(d.norm()) - 1) < 1e-5 and float(raw @ d) > 0
    s = idir.text_scores(clip, bank.emb, "a face wearing sunglasses", "a face")
    proj = bank.emb @ d
    # faces CLIP prefers for the prompt lie further along the direction than the rest
    top = s >= s.quantile(0.9)
    assert proj[top].mean() > proj[~top].mean() + 0.5 * float(raw @ d)


def test_pick_strengths_stops_before_identity_breaks():
    """Fake edit: the image moves along d by the strength; identity holds up to strength 2 for face 0,
    up to 0.5 for face 1; the gain goal is 1.5."""
    d = torch.tensor([1.0, 0.0])

    class Clip:
        def encode_image(self, img):
            return img[:, :2, 0, 0]

    class Identity:
        def embed(self, img):
            limit = torch.tensor([2.0, 0.5])
            ok = img[:, 0, 0, 0] - img[:, 2, 0, 0] <= limit  # moved <= limit: same person
            return torch.stack([ok.float(), (~ok).float()], -1)

    src = torch.zeros(2, 3, 1, 1)

    def render(s):
        out = src.clone()
        out[:, 0, 0, 0] += s
        return out

    s, img, info = pick_strengths(render, clip=Clip(), identity=Identity(), source_img=src, direction=d,
                                  target_gain=1.5, config=AutoStrengthConfig(candidates=(0.5, 1, 1.5, 2, 3),
                                                                             identity_threshold=0.5))
    assert s.tolist() == [1.5, 0.5]
    assert info["gain_reached"] == [True, False]
    assert torch.equal(img[:, 0, 0, 0], torch.tensor([1.5, 0.5]))
    # an identity budget: the strongest candidate that keeps the person, whatever the gain
    s, img, info = pick_strengths(render, clip=Clip(), identity=Identity(), source_img=src, direction=d,
                                  target_gain=1.5, config=AutoStrengthConfig(candidates=(0.5, 1, 1.5, 2, 3),
                                                                             identity_threshold=0.5,
                                                                             target="identity"))
    assert s.tolist() == [2.0, 0.5] and "gain_reached" not in info
    assert torch.equal(img[:, 0, 0, 0], torch.tensor([2.0, 0.5]))
    with pytest.raises(ValueError, match="target"):
        AutoStrengthConfig(target="clip")


def test_global_auto_strength_reports_alpha_per_face():
    g, clip, ident = (factory.load_generator("toy-faces"), factory.load_clip("toy-faces"),
                      factory.load_identity("toy-faces"))
    w = _w(g, [1, 2, 3])
    cfg = factory.auto_strength_config("toy-faces")
    editor = factory.create_editor("global", g, clip, ident, beta=0.3, compute_missing=False, auto=True,
                                   auto_strength=cfg)
    r = editor.edit(Latent(w), Prompt("a face with a beard", strength=3.0))
    assert len(r.metrics["alpha"]) == 3 and len(r.metrics["gain_reached"]) == 3
    assert all(a / 3.0 in cfg.candidates for a in r.metrics["alpha"])
    kept = [s >= cfg.identity_threshold for s in r.metrics["identity_similarity"]]
    smallest = [a == 3.0 * cfg.candidates[0] for a in r.metrics["alpha"]]
    assert all(k or sm for k, sm in zip(kept, smallest))  # identity kept unless even the smallest alpha breaks it


def test_cli_keep_identity_picks_alpha_per_face_within_the_budget(tmp_path):
    """On toy-faces the identity budget is global's default; --fixed-strength gives every face the same alpha."""
    runner = CliRunner()
    args = ["edit", "--model", "toy-faces", "--engine", "global", "--prompt", "a smiling face", "--seeds", "0-3",
            "--out", str(tmp_path / "out")]
    r = runner.invoke(app, args + ["--keep-identity"])
    assert r.exit_code == 0, r.output
    alphas = [float(a) for a in re.findall(r"beta 0\.10, alpha ([\d.]+)\)", r.output)]
    sims = [float(x) for x in re.findall(r"identity similarity ([\d.]+)", r.output)]
    assert len(alphas) == 4 and all(a / 5.0 in (0.25, 0.5, 0.75, 1.0) for a in alphas), r.output  # toy: alpha 5
    assert all(s >= 0.825 or a == 1.25 for s, a in zip(sims, alphas))  # kept, unless even the smallest breaks it
    default = runner.invoke(app, args)
    per_face = r"seed\d: CLIP similarity .*"
    assert default.exit_code == 0 and re.findall(per_face, default.output) == re.findall(per_face, r.output)
    fixed = runner.invoke(app, args + ["--fixed-strength"])
    assert fixed.exit_code == 0 and len(re.findall(r"beta 0\.15, alpha 4\)", fixed.output)) == 4, fixed.output
    for extra, message in ((["--auto-strength"], "choose one"), (["--engine", "optimize"], "--keep-identity")):
        r = runner.invoke(app, args + ["--keep-identity"] + extra)
        assert r.exit_code == 1 and message in r.output, r.output


def test_cli_target_image(tmp_path):
    g = factory.debug_generator()
    with torch.no_grad():
        to_pil(g.synthesis(_w(g, [3]))[0]).save(tmp_path / "ref.png")
    runner = CliRunner()
    r = runner.invoke(app, ["edit", "--model", "debug", "--target-image", str(tmp_path / "ref.png"), "--steps", "2",
                            "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "image-ref-optimize" / "seed0_edited.png").is_file()  # a target image alone: its name
    r = runner.invoke(app, ["edit", "--model", "debug", "--target-image", str(tmp_path / "missing.png"),
                            "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and "error:" in r.output and "missing.png" in r.output
    r = runner.invoke(app, ["edit", "--model", "debug", "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and "--target-image" in r.output


def test_app_any_prompt_tab_strength_per_face(tmp_path):
    from styleclip.app.actions import StyleClipApp

    app_ = StyleClipApp("toy-faces", device="cpu", out_dir=tmp_path / "app")
    session = app_.face_from_seed(2).session
    fixed = app_.any_prompt_edit(session, "a smiling face", None, "global", 1.0, "fixed")
    kept = app_.any_prompt_edit(session, "a smiling face", None, "global", 1.0, "keep identity")
    assert "keep identity" in kept.info and kept.image_file.is_file()
    assert kept.metrics["alpha"] / 5.0 in (0.25, 0.5, 0.75, 1.0)  # toy: alpha 5 with an identity budget
    assert kept.metrics["identity"] >= 0.825 or kept.metrics["alpha"] == 1.25
    assert fixed.metrics["alpha"] == 4.0 and "keep identity" not in fixed.info
    with pytest.raises(InputError, match="strength per face"):
        app_.any_prompt_edit(session, "a smiling face", None, "global", 1.0, "max")


def test_app_any_prompt_tab_with_a_reference_image(tmp_path):
    from styleclip.app.actions import StyleClipApp

    app_ = StyleClipApp("debug", device="cpu", out_dir=tmp_path / "app", prepare_global=False)
    g = app_.generator
    with torch.no_grad():
        to_pil(g.synthesis(_w(g, [4]))[0]).save(tmp_path / "ref.png")
    session = app_.face_from_seed(0, 0.7).session
    out = app_.any_prompt_edit(session, "", str(tmp_path / "ref.png"), "optimize")
    assert out.image_file.is_file() and "reference image" in out.info
    assert out.metrics["clip_after"] > out.metrics["clip_before"]
    with pytest.raises(InputError, match="reference image"):
        app_.any_prompt_edit(session, "  ", None, "optimize")
    with pytest.raises(InputError, match="universal mapper"):
        app_.any_prompt_edit(session, "a photo of a cat", None, "universal mapper")
