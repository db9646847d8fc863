"""The global-directions engine and its CLI commands on the debug models."""
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from styleclip import stylespace as ss
from styleclip.editors.base import ENGINES
from styleclip.editors.global_directions import GlobalDirectionsConfig, GlobalDirectionsEditor
from styleclip.errors import InputError, StyleClipError
from styleclip.factory import create_editor
from styleclip.types import Latent, Prompt




@pytest.fixture(scope="module")
def parts():
    from styleclip.factory import debug_generator, load_clip

    g, clip = debug_generator(), load_clip("debug")
    stats = ss.compute_stats(g, n=2000)
    rel = ss.compute_relevance(g, clip, stats, n_images=1, layers=[0, 3, 9])
    return g, clip, stats, rel


def _editor(parts, **kw):
    g, clip, stats, rel = parts
    return GlobalDirectionsEditor(g, clip, config=GlobalDirectionsConfig(stats=stats, relevance=rel, **kw))


def _latent(g, n=2):
    z = torch.randn(n, g.config.style_dim, generator=torch.Generator().manual_seed(3))
    return Latent(g.mapping_plus(z, 0.7))


def test_registered_and_alpha_zero_is_exact(parts):
    assert ENGINES["global"] is GlobalDirectionsEditor
    g = parts[0]
    ed = _editor(parts)
    lat = _latent(g)
    res = ed.edit(lat, Prompt("a smiling face", strength=0.0))
    assert torch.equal(res.image, g.synthesis(lat.w_plus))
    assert torch.equal(res.source_image, res.image)
    assert res.engine == "global"
    assert res.metrics["channels_kept"] > 0 and res.metrics["beta"] == 0.15
    assert len(res.metrics["clip_before"]) == 2 and res.metrics["clip_before"] == res.metrics["clip_after"]


def test_edit_is_s_plus_alpha_delta_s(parts):
    g, clip, stats, rel = parts
    ed = _editor(parts, beta=0.1)
    lat = _latent(g, 1)
    res = ed.edit(lat, Prompt("a smiling face", neutral="a face", strength=3.0))
    dt = ss.text_direction(clip, "a face", "a smiling face")
    ds, kept = ss.delta_s(g, rel, stats, dt, 0.1)
    want = g.synthesis_from_styles([s + 3.0 * d for s, d in zip(g.styles(lat.w_plus), ds)])
    assert torch.allclose(res.image, want, atol=1e-6)
    assert not torch.allclose(res.image, res.source_image)
    assert res.metrics["channels_kept"] == kept
    # config.alpha overrides the prompt strength; directions are cached
    ed2 = _editor(parts, beta=0.1, alpha=3.0)
    assert torch.allclose(ed2.edit(lat, Prompt("a smiling face")).image, want, atol=1e-6)
    assert ed2.direction(Prompt("a smiling face"))[0] is ed2.direction(Prompt("a smiling face"))[0]


def test_several_prompts_sum_their_directions(parts):
    g = parts[0]
    ed = _editor(parts, beta=0.1)
    lat = _latent(g, 1)
    p1, p2 = Prompt("a smiling face", strength=2.0), Prompt("a face with blue eyes", strength=-1.5)
    res = ed.edit_many(lat, [p1, p2])
    d1, d2 = ed.direction(p1)[0], ed.direction(p2)[0]
    want = g.synthesis_from_styles([s + 2.0 * a - 1.5 * b for s, a, b in zip(g.styles(lat.w_plus), d1, d2)])
    assert torch.allclose(res.image, want, atol=1e-5)
    assert len(res.metrics["channels_kept"]) == 2


def test_auto_beta_and_beta_too_high(parts):
    ed = _editor(parts, beta=None)
    _, kept, beta = ed.direction(Prompt("a smiling face"))
    assert 0.1 <= beta <= 0.29 and (kept > 20 or beta == 0.1)
    with pytest.raises(InputError, match="beta too high"):
        _editor(parts, beta=0.999).edit(_latent(parts[0], 1), Prompt("a smiling face", strength=1.0))


def test_from_files_computes_and_caches_for_tiny_models(parts, tmp_path):
    g, clip, stats, rel = parts
    rel.save(tmp_path / "fs3.npy")
    stats.save(tmp_path / "stats.safetensors")
    ed = create_editor("global", g, clip, relevance=tmp_path / "fs3.npy", stats=tmp_path / "stats.safetensors")
    assert torch.equal(ed.relevance.fs3, rel.fs3) and ed.relevance.layers == rel.layers
    with pytest.raises(StyleClipError, match="styleclip relevance"):
        create_editor("global", g, clip, stats=tmp_path / "stats.safetensors", compute_missing=False)


def test_cli_relevance_and_sweep(tmp_path):
    from styleclip.cli import app

    runner = CliRunner()
    out = tmp_path / "fs3.npy"
    r = runner.invoke(app, ["relevance", "--model", "debug", "--out", str(out), "--images", "1", "--fast",
                            "--stats-samples", "1000"])
    assert r.exit_code == 0, r.output
    assert np.load(out).shape == (32 * 6 + 16, 32)
    grid = tmp_path / "grid.png"
    r = runner.invoke(app, ["sweep", "--model", "debug", "--relevance", str(out), "--prompt", "a smiling face",
                            "--alphas", "-5,0,5", "--betas", "0.1,0.15", "--seed", "1", "--out", str(grid), "--gif",
                            "--stats-samples", "1000"])
    assert r.exit_code == 0, r.output
    im = Image.open(grid)
    assert im.width > im.height >= 256  # 3 columns x 2 rows, upscaled for viewing
    assert grid.with_suffix(".gif").is_file()
    r = runner.invoke(app, ["sweep", "--model", "debug", "--relevance", str(out), "--prompt", "x",
                            "--alphas", "a,b", "--out", str(grid)])
    assert r.exit_code == 1 and "error:" in r.output
