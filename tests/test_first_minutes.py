"""What a new user meets first (issue 19): options that say their defaults, sources and engines that refuse
what they would ignore, latents that chain, names that resolve for the generator at hand, toy-faces edits
that report what they changed beside identity."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from styleclip.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def toy():
    from styleclip.factory import load_clip, load_generator

    return load_generator("toy-faces"), load_clip("toy-faces")


# ---- finding 8: help shows real defaults, no stray " ." ------------------------------------------------
@pytest.mark.parametrize("command", [["edit"], ["sweep"], ["serve"], ["toy", "train"], ["toy", "eval"]])
def test_help_has_defaults_and_no_eaten_brackets(command):
    r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    text = re.sub(r"[│╭╮╰╯─]", " ", r.output)
    assert not re.search(r"\w \.\s", text), "a help text lost its [default: ...] to rich markup"
    flat = " ".join(text.split())
    if command == ["edit"]:
        for option, default in (("--steps", "300, toy-faces 50"), ("--lr", "0.1"), ("--l2-lambda", "0.008"),
                                ("--id-lambda", "0.005, toy-faces 0.1"), ("--beta", "0.15"), ("--clip-views", "0, toy-faces 4"),
                                ("--strength", "4.1, toy-faces 4")):
            assert re.search(re.escape(option) + r".*?default: \(?[^)]*" + re.escape(default), flat), option
    if command == ["serve"]:
        assert "default: (ffhq, or toy-faces" in flat
    if command == ["toy", "train"]:
        assert "the recipe's; the run's with --resume" in flat


# ---- finding 6: refuse what would be ignored, names, the "wrote" line ------------------------------------
def test_seed_with_seeds_and_foreign_engine_options_are_errors(tmp_path):
    r = runner.invoke(app, ["edit", "--model", "debug", "--prompt", "x", "--seed", "1", "--seeds", "0-1",
                            "--out", str(tmp_path)])
    assert r.exit_code == 1 and "not --seed and --seeds" in r.output
    r = runner.invoke(app, ["edit", "--model", "debug", "--engine", "global", "--prompt", "x", "--steps", "5",
                            "--gif", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "--steps, --gif are options of --engine optimize" in r.output
    r = runner.invoke(app, ["edit", "--model", "debug", "--prompt", "x", "--beta", "0.2", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "--beta is an option of --engine global" in r.output
    assert not list(tmp_path.iterdir())  # refused before any work


def test_weights_path_of_a_model_set():
    r = runner.invoke(app, ["weights", "path", "ffhq"])
    assert r.exit_code == 1 and "did you mean" not in r.output
    assert "stylegan2-ffhq-1024  not present" in r.output and "weights download ffhq" in r.output
    from styleclip.store import registry as pretrained
    from styleclip.errors import WeightsMissingError

    with pytest.raises(WeightsMissingError, match="'ffhq' is a model set"):
        pretrained.get_spec("ffhq")


def test_edit_names_and_wrote_line_with_gif(tmp_path):
    out = tmp_path / "o"
    r = runner.invoke(app, ["edit", "--model", "debug", "--prompt", "x", "--seeds", "0-1", "--steps", "2", "--gif",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "<label>_edited.png, <label>_before_after.png, <label>_latent.pt, <label>.gif" in r.output
    assert "seed0, seed1" in r.output and "W+ space" in r.output
    assert f"wrote 2 edit(s) to {out / 'x-optimize'}/" in r.output  # each run in its own folder, said where
    r = runner.invoke(app, ["edit", "--model", "debug", "--prompt", "x", "--latent",
                            str(out / "x-optimize" / "seed1_latent.pt"), "--steps", "1", "--out", str(tmp_path / "again")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "again" / "x-optimize").iterdir()) == \
        ["seed1_before_after.png", "seed1_edited.png", "seed1_latent.pt"]  # not seed1_latent_latent.pt


# ---- finding 5: S-space latents round-trip and chain ----------------------------------------------------
def test_s_space_latent_round_trip_and_engines(debug_generator, tmp_path):
    from styleclip.editors.mapper import MapperEditor
    from styleclip.editors.optimization import OptimizationConfig, OptimizationEditor
    from styleclip.errors import InputError
    from styleclip.factory import load_clip
    from styleclip.nets.mapper import LevelsMapper
    from styleclip.sources import latents_from_dir, latents_from_seeds, load_latent_file, save_latent
    from styleclip.types import Latent, Prompt

    g = debug_generator
    styles = g.styles(latents_from_seeds(g, [0, 1]).w_plus)
    assert save_latent(styles, tmp_path / "a_latent.pt") == "S"
    back = load_latent_file(tmp_path / "a_latent.pt", g)
    assert back.space == "S" and back.labels == ("a_0", "a_1") and back.w_plus is None
    assert all(torch.equal(x, y) for x, y in zip(back.styles, styles))
    assert back.rows(1, 2).batch_size == 1 and torch.equal(back.rows(1, 2).styles[3], styles[3][1:2])
    save_latent(Latent(None, styles=tuple(s[:1] for s in styles)), tmp_path / "b_latent.pt")
    assert latents_from_dir(tmp_path, g).batch_size == 3
    torch.save(torch.zeros(1, g.num_ws, g.config.style_dim), tmp_path / "c.pt")
    with pytest.raises(InputError, match="mixes W\\+ and S-space"):
        latents_from_dir(tmp_path, g)
    bad = [s[:, :3] for s in styles]
    torch.save({"space": "S", "styles": bad}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="style layer 0 has shape"):
        load_latent_file(tmp_path / "bad.pt", g)
    with pytest.raises(InputError, match="mapper edits W\\+"):
        MapperEditor(g, None, config=__import__("styleclip.editors.mapper", fromlist=["MapperConfig"]).MapperConfig(
            mapper=LevelsMapper(g.num_ws, g.config.style_dim))).edit(back, Prompt("x"))
    clip = load_clip("debug")
    with pytest.raises(InputError, match="--space styles"):
        OptimizationEditor(g, clip, config=OptimizationConfig(steps=1)).edit(back, Prompt("x"))
    res = OptimizationEditor(g, clip, config=OptimizationConfig(steps=1, space="styles", lr=0.0)).edit(
        back, Prompt("x"))
    assert torch.allclose(res.source_image, g.synthesis_from_styles(styles), atol=1e-5)  # started from the file


def test_global_edits_chain_through_the_saved_latent(toy, tmp_path):
    from styleclip.factory import create_editor
    from styleclip.sources import latents_from_seeds, load_latent_file, save_latent
    from styleclip.types import Prompt

    g, clip = toy
    ed = create_editor("global", g, clip, beta=0.3)
    first = ed.edit(latents_from_seeds(g, [3]), Prompt("a face with blond hair", strength=3))
    save_latent(first.latent, tmp_path / "s_latent.pt")
    chained = ed.edit(load_latent_file(tmp_path / "s_latent.pt", g), Prompt("a face with blond hair", strength=0))
    assert torch.allclose(chained.image, first.image, atol=1e-5)  # alpha 0 on the saved S latent = the first edit
    both = ed.edit_many(latents_from_seeds(g, [3]), [Prompt("a face with blond hair", strength=3),
                                                     Prompt("a face with a beard", strength=3)])
    step2 = ed.edit(load_latent_file(tmp_path / "s_latent.pt", g), Prompt("a face with a beard", strength=3))
    assert torch.allclose(step2.image, both.image, atol=1e-4)  # two chained edits = the two composed


# ---- finding 2: short mapper names resolve for this generator (CLI and app) -------------------------------
def test_short_mapper_name_finds_the_toy_mapper(toy):
    from styleclip.store.mappers import TOY_MAPPERS, find_mapper

    g, _ = toy
    assert find_mapper("mohawk", generator=g) == TOY_MAPPERS / "mohawk.safetensors"
    assert find_mapper("blond hair", generator=g) == TOY_MAPPERS / "blond_hair.safetensors"


# ---- finding 3 and 4: the app follows the model and shares the CLI's relevance ---------------------------
def test_app_on_toy_faces_examples_relevance_and_mapper_by_name(toy, tmp_path):
    from styleclip.app.actions import StyleClipApp
    from styleclip.factory import create_editor

    app_ = StyleClipApp("toy-faces", device="cpu", out_dir=tmp_path / "out")
    assert app_.global_defaults() == (4.0, 0.15)
    rows = app_.examples("global")
    assert all(r[2:] == [4.0, 0.15] for r in rows) and "a face with blond hair" in [r[1] for r in rows]
    cli_editor = create_editor("global", app_.generator, app_.clip, app_.identity, beta=0.15,
                               ridge=0.2, identity_damping=0.005)
    ours = app_.global_editor()
    assert torch.equal(ours.relevance.fs3, cli_editor.relevance.fs3)  # one relevance for both
    assert torch.equal(ours.identity_cost.cost, cli_editor.identity_cost.cost)  # and the same refinements
    assert (ours.config.ridge, ours.config.identity_damping) == (0.2, 0.005)
    src = app_.face_from_seed(0).session
    out = app_.mapper_edit(src, "mohawk", 1.0)  # a short name, as an API caller sends it
    assert "a face with a mohawk" in out.info
    g_out = app_.global_edit(src, "a face", "a face with blond hair", 3, 0.3)
    from styleclip.sources import load_latent_file

    assert load_latent_file(g_out.latent_file, app_.generator).space == "S"  # the app saves what --latent reads


def test_app_removes_its_own_result_folder():
    from styleclip.app.actions import StyleClipApp

    app_ = StyleClipApp("debug", device="cpu", prepare_global=False)
    app_.optimize(None, "x", steps=1)
    assert app_.out_dir.is_dir() and any(app_.out_dir.iterdir())
    app_.close()
    assert not app_.out_dir.exists()


def test_ffhq_examples_keep_the_paper_settings():
    from styleclip.app.actions import EXAMPLES

    assert EXAMPLES["ffhq"]["global"][0] == ["a face", "a smiling face", 4.1, 0.15]
    assert all(len(r) == 2 for r in EXAMPLES["toy-faces"]["global"])  # toy rows take the model's alpha/beta


# ---- finding 1: unrelated attributes beside identity on toy-faces ---------------------------------------
def test_attributes_named_and_unrelated_changes(toy):
    from styleclip.sources import latents_from_seeds
    from styleclip.toy.evaluate import attributes_named, unrelated_changes
    from styleclip.toy.assets import load_toy_classifier

    assert attributes_named("mohawk") == {"hair_style"}
    assert attributes_named("a smiling face with blond hair") == {"expression", "hair_colour"}
    assert attributes_named("a face wearing sunglasses") == {"glasses"}
    assert attributes_named("a face with a beard") == {"beard"}
    g, _ = toy
    with torch.no_grad():
        imgs = g.synthesis(latents_from_seeds(g, [0, 1, 2, 3]).w_plus)
    clf = load_toy_classifier()
    same = unrelated_changes(clf, imgs, imgs, "mohawk")
    assert all(kept == total and not changed for kept, total, changed in same)
    swapped = unrelated_changes(clf, imgs, imgs.flip(0), "mohawk")
    pred = clf.predict(imgs)
    differ = sum(pred["glasses"][i] != pred["glasses"][3 - i] for i in range(4))
    assert sum("glasses" in " ".join(c) for _, _, c in swapped) == differ


def test_toy_cli_edit_reports_unrelated_attributes(tmp_path):
    r = runner.invoke(app, ["edit", "--model", "toy-faces", "--engine", "mapper", "--prompt", "mohawk", "--seed", "2",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert re.search(r"identity similarity [\d.]+, unrelated attributes kept \d/\d", r.output)
    assert "ignores hair, glasses, beard, expression and background" in r.output


# ---- finding 3 (sweep) and 8 (labels) ------------------------------------------------------------------------
def test_sweep_defaults_follow_the_model_and_grid_is_labelled(tmp_path):
    import numpy as np
    from PIL import Image

    out = tmp_path / "grid.png"
    r = runner.invoke(app, ["sweep", "--model", "toy-faces", "--prompt", "a face with blond hair", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "rows beta 0.1, 0.15, 0.2; columns alpha -4, 0, 4" in r.output
    img = np.asarray(Image.open(out).convert("L"))
    assert img.shape[0] % 3 != 0 or img.shape[1] % 3 != 0  # a label margin beside the 3 x 3 tiles
    assert (img[:12, img.shape[1] // 2 - 60: img.shape[1] // 2 + 60] < 100).any()  # text above the columns


# ---- finding 10: CI installs with the README's CPU-only line ----------------------------------------------
def test_ci_runs_the_readme_setup_lines():
    r = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env={"CI_DRY_RUN": "1", "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "--index-url https://download.pytorch.org/whl/cpu" in lines[0]
    # the CPU-only index may be unreachable (a machine that sees only PyPI): the line falls back to PyPI's wheels
    first, fallback = lines[0].removeprefix("+ ").split(" || ")
    assert first.startswith("python3 -m pip install -q torch==") and fallback.startswith("python3 -m pip install -q torch==")
    assert "--index-url" not in fallback
    assert '-e ".[test,app]"' in lines[1] and "chromium" in lines[2] and 'pytest -q -m "not slow"' in lines[3]


# ---- finding 7: invert warns on toy-faces and says when it reads the cache ---------------------------------
@pytest.mark.slow  # ~10 s (face detection + toy model); the docs-commands test runs invert too
def test_invert_warns_on_toy_faces_and_reports_the_cache(tmp_path):
    from PIL import Image
    from skimage import data

    photo = tmp_path / "photo.jpg"
    Image.fromarray(data.astronaut()).resize((256, 256)).save(photo)  # small: face detection in a fraction
    args = ["invert", str(photo), "--model", "toy-faces", "--steps", "2", "--out", str(tmp_path / "inv")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "not a photo model" in first.output and "inverting (optimization, 2 steps)" in first.output
    assert "(W+ [1, 10, 128]; optimization, 2 steps)" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "found in the inversion cache" in again.output and "; from the cache)" in again.output
    assert "inverting:" not in again.output  # no progress bar for work not done


# ---- a reference-image edit on toy-faces reads "unrelated" against the reference (was a crash) -----------------
def test_target_image_edit_reports_unrelated_attributes_against_the_reference(tmp_path):
    import torch

    from styleclip.factory import load_generator
    from styleclip.util.imaging import to_pil
    from styleclip.sources import latents_from_seeds

    g = load_generator("toy-faces")
    with torch.no_grad():
        to_pil(g.synthesis(latents_from_seeds(g, [0]).w_plus))[0].save(tmp_path / "face.png")
    # the reference is seed 0 itself: nothing differs, so every attribute is unrelated and compared
    r = runner.invoke(app, ["edit", "--model", "toy-faces", "--engine", "global", "--target-image",
                            str(tmp_path / "face.png"), "--seed", "0", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    import re

    found = re.search(r"unrelated attributes kept \d/(\d)", r.output)
    assert found and int(found.group(1)) >= 5, r.output  # all six (hair colour is left out on a bald face)


# ---- toy eval generator evaluates a --tiny (16 px) run against 16 px renders (was a size-mismatch crash) ---------
def test_toy_eval_generator_takes_a_tiny_run(tmp_path):
    import json

    out = tmp_path / "gen"
    r = runner.invoke(app, ["toy", "train", "generator", "--tiny", "--steps", "1", "--eval-size", "8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["toy", "eval", "generator", "--weights", str(out), "--n", "8"])
    assert r.exit_code == 0, r.output
    figures = json.loads(r.output[r.output.index("{"):])
    assert 0 < figures["psnr"] < 60 and "psnr_from_code" in figures
