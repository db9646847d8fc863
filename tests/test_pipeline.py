"""The one edit plan (styleclip.pipelines.edit) and the model-set records (styleclip.models): the CLI, the app
and Python give the same edit for the same request; one set of bounds; one CLIP rule; --dry-run; each run in
its own folder."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from styleclip import factory, models
from styleclip.cli import app as cli
from styleclip.errors import InputError
from styleclip.pipelines import edit as plan
from styleclip.pipelines.bounds import BOUNDS

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def _latent(path: Path):
    """A saved latent as a list of tensors (W+ or S space)."""
    from styleclip.sources import load_latent_file

    lat = load_latent_file(path, factory.debug_generator() if "debug" in str(path) else factory.load_generator(
        "toy-faces"))
    return [lat.w_plus] if lat.styles is None else list(lat.styles)


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x.cpu(), y.cpu()) for x, y in zip(a, b))


def test_models_import_no_torch():
    code = "import styleclip.models, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_paper_presets_are_the_engines_defaults():
    from styleclip.editors.global_directions import GlobalDirectionsConfig
    from styleclip.editors.optimization import OptimizationConfig
    from styleclip.editors.universal_mapper import UniversalMapperConfig
    from styleclip.types import Prompt
    from styleclip.util.checks import MAX_SEED

    opt, paper = OptimizationConfig(), models.PAPER.optimize
    assert (paper.steps, paper.lr, paper.l2_lambda, paper.id_lambda, paper.clip_views, paper.init,
            paper.init_min_change) == (opt.steps, opt.lr, opt.l2_lambda, opt.id_lambda, opt.clip_views, opt.init,
                                       opt.init_min_change)
    assert models.PAPER.global_.beta == GlobalDirectionsConfig.beta
    assert (models.PAPER.universal.beta, models.PAPER.universal.min_change) == \
        (UniversalMapperConfig.beta, UniversalMapperConfig.min_change)
    assert models.PAPER.optimize.strength == Prompt("x").strength
    assert BOUNDS["seed"][1] == MAX_SEED  # the bound --seeds ranges use too


def test_model_sets_are_records_with_the_store_s_weight_names():
    from styleclip.store import registry

    for name, record in models.MODEL_SETS.items():
        weights = registry.MODEL_SETS[name]
        assert (record.generator, record.clip, record.identity) == (weights.generator, weights.clip, weights.identity)
    assert models.TOY_FACES.default_engine == "universal" and models.FFHQ.default_engine == "optimize"
    assert not models.TOY_FACES.photo_model and models.FFHQ.photo_model
    assert models.TOY_FACES.judge_unrelated and not models.DEBUG.judge_unrelated
    with pytest.raises(InputError, match="did you mean toy-faces"):
        models.get("toy-face")


def test_one_clip_rule(monkeypatch):
    g = factory.debug_generator()
    assert factory.clip_for(g, model="toy-faces") == "toy-faces"
    assert factory.clip_for(g, model="debug", clip="ViT-B-16") == "ViT-B-16"  # given wins
    assert factory.clip_for(g, checkpoint="g.pt") == models.FFHQ.clip  # nothing prepared: FFHQ's
    import styleclip.store.prepared as prepared

    monkeypatch.setattr(prepared, "find_prepared", lambda g: (Path("prep"), {"clip": "debug"}))
    assert factory.clip_for(g, checkpoint="g.pt") == "debug"  # what `styleclip prepare --clip` recorded
    assert factory.clip_for(g, model="some/file.pt") == "debug"  # a file as the model (the app, serve)


def test_same_request_same_edit_through_cli_app_and_python(tmp_path):
    """optimize on debug: `styleclip edit`, StyleClipApp.optimize and pipelines.edit give the same bits."""
    from styleclip.app.actions import StyleClipApp

    r = runner.invoke(cli, ["edit", "--model", "debug", "--prompt", "mohawk", "--steps", "3", "--seed", "0",
                            "--device", "cpu", "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    folder = tmp_path / "cli" / "mohawk-optimize"
    request = plan.EditRequest(model="debug", prompt="mohawk", steps=3, seed=0, device="cpu", out=None)
    done = plan.edit(request)
    assert done.folder is None and len(done.edits) == 1
    app = StyleClipApp("debug", device="cpu", out_dir=tmp_path / "app", prepare_global=False)
    out = app.optimize(app.face_from_seed(0).session, "mohawk", steps=3)

    cli_latent = torch.load(folder / "seed0_latent.pt", weights_only=True)
    app_latent = torch.load(out.latent_file, weights_only=True)
    assert torch.equal(cli_latent, app_latent) and torch.equal(cli_latent, done.edits[0].latent.cpu())
    cli_png = np.asarray(Image.open(folder / "seed0_edited.png"))
    assert np.array_equal(cli_png, np.asarray(Image.open(out.image_file)))


def test_same_request_same_edit_on_toy_faces_global(tmp_path):
    """toy-faces global with its identity budget (the CLI's default there) is the app's 'keep identity'."""
    from styleclip.app.actions import StyleClipApp

    prompt = "a face with blond hair"
    r = runner.invoke(cli, ["edit", "--model", "toy-faces", "--engine", "global", "--prompt", prompt, "--seed", "2",
                            "--device", "cpu", "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    cli_latent = torch.load(tmp_path / "cli" / "a-face-with-blond-hair-global" / "seed2_latent.pt", weights_only=True)
    done = plan.edit(plan.EditRequest(model="toy-faces", engine="global", prompt=prompt, seed=2, device="cpu",
                                      out=None))
    app = StyleClipApp("toy-faces", device="cpu", out_dir=tmp_path / "app")
    out = app.any_prompt_edit(app.face_from_seed(2).session, prompt, engine="global", strength=1.0,
                              auto="keep identity")
    app_latent = torch.load(out.latent_file, weights_only=True)
    assert _same(cli_latent["styles"], app_latent["styles"])
    assert _same(cli_latent["styles"], done.edits[0].latent)


def test_app_shows_the_cli_s_defaults():
    from styleclip.app.actions import StyleClipApp

    for name in ("debug", "toy-faces"):
        app = StyleClipApp(name, device="cpu", prepare_global=False)
        fixed = plan.resolve(plan.EditRequest(model=name, engine="global", prompt="x", keep_identity=False, out=None))
        budget = plan.resolve(plan.EditRequest(model=name, engine="global", prompt="x", keep_identity=True, out=None))
        opt = plan.resolve(plan.EditRequest(model=name, engine="optimize", prompt="x", out=None))
        assert app.global_defaults() == (fixed.strength, fixed.options["beta"])
        assert app.global_defaults(keep_identity=True) == (budget.strength, budget.options["beta"])
        assert app.optimize_defaults().steps == opt.options["steps"]
        assert app.optimize_defaults().clip_views == opt.options["clip_views"]
        app.close()
    assert fixed.strength == 4.0 and budget.strength == 5.0  # toy-faces: one decision, in models/


@pytest.mark.parametrize("name,value", [("strength", 150.0), ("strength", math.nan), ("seed", -1),
                                        ("seed", 2 ** 63), ("beta", 2.0), ("steps", 0), ("lr", 0.0)])
def test_the_app_refuses_what_the_cli_refuses(tmp_path, name, value):
    from styleclip.app.actions import StyleClipApp

    option = {"strength": "--strength", "seed": "--seed", "beta": "--beta", "steps": "--steps", "lr": "--lr"}[name]
    args = ["edit", "--model", "debug", "--prompt", "x", option, str(value), "--out", str(tmp_path / "o"),
            "--dry-run"]
    if name == "beta":
        args += ["--engine", "global"]
    r = runner.invoke(cli, args)
    assert r.exit_code == 1 and r.output.startswith("error:") and len(r.output.strip().splitlines()) == 1, r.output
    app = StyleClipApp("debug", device="cpu", out_dir=tmp_path / "app", prepare_global=False)
    src = app.face_from_seed(0).session
    call = {"strength": lambda: app.any_prompt_edit(src, "x", engine="optimize", strength=value),
            "seed": lambda: app.face_from_seed(value),
            "beta": lambda: app.global_edit(src, "a face", "x", 1.0, value),
            "steps": lambda: app.optimize(src, "x", steps=value),
            "lr": lambda: app.optimize(src, "x", steps=1, lr=value)}[name]
    with pytest.raises(InputError):
        call()


def test_the_app_takes_what_the_cli_takes(tmp_path):
    """Values the app refused before (seed 2^40, strength 50) are fine in both."""
    from styleclip.app.actions import StyleClipApp

    r = runner.invoke(cli, ["edit", "--model", "debug", "--prompt", "x", "--seed", str(2 ** 40), "--strength", "50",
                            "--dry-run"])
    assert r.exit_code == 0, r.output
    app = StyleClipApp("debug", device="cpu", out_dir=tmp_path / "app", prepare_global=False)
    assert app.face_from_seed(2 ** 40).session.label == f"seed{2 ** 40}"
    assert app._global_edit("a face", "x", 50, 0.0).alpha == 50  # the old slider bound was 10 (mapper) / 20


def test_dry_run_prints_settings_and_loads_nothing(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    for loader in ("load_generator", "load_clip", "load_identity"):
        monkeypatch.setattr(factory, loader, refuse)
    out = tmp_path / "o"
    r = runner.invoke(cli, ["edit", "--model", "toy-faces", "--engine", "global", "--prompt", "a smiling face",
                            "--beta", "0.2", "--out", str(out), "--dry-run"])
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line for line in r.output.strip().splitlines()}
    assert "(option)" in lines["beta"] and " 0.2 " in lines["beta"]
    assert "(model set toy-faces)" in lines["strength"] and " 5 " in lines["strength"]  # the identity budget's
    assert "keep-identity" in lines["strength_mode"] and "(option)" in lines["engine"]
    assert "(default)" in lines["neutral"] and "a face" in lines["neutral"]
    assert str(out / "a-smiling-face-global") in lines["out"]
    assert not out.exists()  # nothing written
    r = runner.invoke(cli, ["edit", "--model", "debug", "--prompt", "x", "--steps", "5", "--dry-run"])
    assert r.exit_code == 0 and "(default)" in r.output and "steps" in r.output
    r = runner.invoke(cli, ["edit", "--model", "debug", "--prompt", "x", "--engine", "magic", "--dry-run"])
    assert r.exit_code == 1 and "unknown engine" in r.output  # refused before anything loads


def test_each_run_writes_its_own_folder(tmp_path):
    args = ["edit", "--model", "debug", "--prompt", "A face, with glasses!", "--steps", "1", "--out", str(tmp_path)]
    first, second = runner.invoke(cli, args), runner.invoke(cli, args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    a, b = tmp_path / "a-face-with-glasses-optimize", tmp_path / "a-face-with-glasses-optimize-2"
    assert f"to {a}/" in first.output and f"to {b}/" in second.output
    assert (a / "seed0_edited.png").is_file() and (b / "seed0_edited.png").is_file()
    before = (a / "seed0_latent.pt").stat().st_mtime_ns
    third = runner.invoke(cli, args + ["--overwrite", "--seed", "1"])
    assert third.exit_code == 0 and f"to {a}/" in third.output, third.output
    assert (a / "seed1_edited.png").is_file() and (a / "seed0_latent.pt").stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [a.name, b.name]


def test_run_folder_names():
    from styleclip.util.outputs import run_folder, slug

    assert slug("A face with BLOND hair!") == "a-face-with-blond-hair" and slug("!!!") == "edit"
    assert len(slug("word " * 50)) <= 60
    assert plan.run_name(None, Path("refs/My Face.png"), "global") == "image-my-face-global"
    assert run_folder("nowhere", "x-global") == Path("nowhere/x-global")


def test_python_callers_get_results_and_files(tmp_path):
    done = plan.edit(plan.EditRequest(model="debug", prompt="mohawk", seeds="0-2", steps=1, batch_size=2,
                                      out=tmp_path))
    assert [e.label for e in done.edits] == ["seed0", "seed1", "seed2"]
    assert done.folder == tmp_path / "mohawk-optimize" and all(f.is_file() for e in done.edits for f in e.files)
    assert "wrote 3 edit(s)" in done.summary() and "CLIP similarity" in done.edits[0].line()
    settings = plan.resolve(plan.EditRequest(model="debug", prompt="mohawk", out=None))
    assert settings.as_dict()["steps"] == 300 and settings.origins()["steps"] == "default"
    with pytest.raises(InputError, match="--beta is an option of --engine global"):
        plan.resolve(plan.EditRequest(model="debug", prompt="x", beta=0.2, out=None))
