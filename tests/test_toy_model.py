"""The embedded toy-faces model set: loading, the default-model fallback, shipped style-space data, mappers."""
import pytest
import torch
from typer.testing import CliRunner

from styleclip import factory
from styleclip.store import registry as pretrained
from styleclip.cli import app
from styleclip.errors import WeightsMissingError


@pytest.fixture(scope="module")
def toy():
    g = factory.load_generator("toy-faces")
    return g, factory.load_clip("toy-faces"), factory.load_identity("toy-faces")


def test_default_model_falls_back_to_toy_with_one_line_notice():
    lines = []
    assert factory.default_model(lines.append) == "toy-faces"
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "toy-faces" in lines[0] and "offline" in lines[0] and "styleclip weights download ffhq" in lines[0]


def test_default_model_is_ffhq_when_its_weights_are_present(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLECLIP_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / pretrained.get_spec("stylegan2-ffhq-1024").filename).write_bytes(b"present")
    lines = []
    assert factory.default_model(lines.append) == "ffhq" and lines == []


def test_default_model_when_the_download_fails(monkeypatch):
    monkeypatch.delenv("STYLECLIP_OFFLINE")

    def fail(name, **kw):
        raise WeightsMissingError(f"{name}: unreachable")

    monkeypatch.setattr(pretrained, "download", fail)
    lines = []
    assert factory.default_model(lines.append) == "toy-faces"
    assert "download failed" in lines[0]


def test_toy_model_set_loads_and_runs(toy):
    g, clip, identity = toy
    assert g.config.size == 64 and not any(p.requires_grad for p in g.parameters())
    assert torch.isfinite(g.w_avg).all() and g.w_avg.abs().sum() > 0  # set after training
    z = torch.randn(3, g.config.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = g.synthesis(g.mapping_plus(z, truncation_psi=0.7))
        e, i = clip.encode_image(img), identity.embed(img)
    assert img.shape == (3, 3, 64, 64)
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert i.shape == (3, 128) and torch.allclose(i.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert "toy-faces" in pretrained.MODEL_SETS and pretrained.MODEL_SETS["toy-faces"].builtin


def test_edit_without_a_model_uses_toy_faces(tmp_path):
    res = CliRunner().invoke(app, ["edit", "--prompt", "a face with a mohawk", "--steps", "2", "--seed", "3",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "using the embedded 'toy-faces' model" in res.output
    run = tmp_path / "a-face-with-a-mohawk-optimize"  # the run's own folder
    assert (run / "seed3_before_after.png").is_file() and (run / "seed3_edited.png").is_file()


def test_shipped_toy_assets_stay_small():
    from pathlib import Path

    import styleclip

    root = Path(styleclip.__file__).parent / "assets"
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size <= 30 * 2**20, f"package assets are {size / 2**20:.1f} MiB"
