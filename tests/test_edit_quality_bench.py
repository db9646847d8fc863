"""benchmarks.edit_quality: argument helpers, the default choice rule, and (slow, needs the toy generator)
a tiny end-to-end run that writes the report with a row for every engine it was asked for."""
import importlib
import json
import sys
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    if str(ROOT) not in sys.path:  # as `python -m benchmarks.edit_quality` from the repository root
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("benchmarks.edit_quality")


def test_grid_and_prompt_selection(bench):
    grid = bench.parse_grid("steps=10,20;l2-lambda=0.1")
    assert grid == [{"steps": 10, "l2_lambda": 0.1}, {"steps": 20, "l2_lambda": 0.1}]
    assert bench.parse_grid("") == []
    with pytest.raises(SystemExit, match="cannot read"):
        bench.parse_grid("alpha=1")
    sel = bench.select_prompts("expression;a face with a mohawk")
    assert list(sel) == ["a smiling face", "a surprised face", "a face with a mohawk"]
    with pytest.raises(SystemExit, match="neither a group"):
        bench.select_prompts("a face with a hat")
    assert len(bench.select_prompts(bench.first_of_groups())) == 5


def test_best_setting_maximises_good_rate_then_success_then_earlier(bench):
    nan = float("nan")
    pts = [({"a": 1}, {"good_rate": 0.5, "success_rate": 0.6}), ({"a": 2}, {"good_rate": 0.5, "success_rate": 0.9}),
           ({"a": 3}, {"good_rate": 0.5, "success_rate": 0.9}), ({"a": 4}, {"good_rate": nan, "success_rate": 1.0})]
    assert bench.best_setting(pts)[0] == {"a": 2}
    assert bench.best_setting([({"a": 1}, {"good_rate": nan})]) is None


@pytest.mark.slow
def test_tiny_run_writes_every_engine_row(bench, tmp_path):
    if not (ROOT / "styleclip" / "assets" / "toy_faces" / "generator.safetensors").is_file():
        pytest.skip("toy generator weights not present")
    out = tmp_path / "bench.md"
    res = bench.main(["--seeds", "2", "--prompts", "a smiling face", "--engines", "optimize,mapper",
                      "--steps", "2", "--mapper-steps", "2", "--mapper-latents", "8", "--train-mappers",
                      "--out", str(out), "--threads", "1"])
    text = out.read_text()
    for eng in ("optimize", "mapper"):
        assert f"| {eng} |" in text
        s = res["engines"][eng]["summary"]
        assert s["n"] == 2 and 0 <= s["identity_kept_rate"] <= 1 and not math.isnan(s["clip_gain"])
    assert (tmp_path / "bench" / "success_vs_identity.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert saved["engines"]["optimize"]["rows"][0]["prompt"] == "a smiling face"


def test_mapper_files_record_training_time_across_resume(debug_generator, tmp_path):
    """The bench reports a found mapper's `train_seconds`; a resumed run adds to it."""
    from styleclip.store.mappers import load_mapper
    from styleclip.training.mapper import MapperTrainConfig, train_mapper
    from styleclip.factory import load_clip

    clip = load_clip("debug")
    cfg = MapperTrainConfig(steps=4, num_latents=4, num_val_latents=2, val_interval=2, save_interval=2,
                            image_interval=4)
    short = MapperTrainConfig(**{**cfg.__dict__, "steps": 2})
    first = train_mapper(debug_generator, clip, "a cat", out_dir=tmp_path, config=short)
    t2 = load_mapper(first.last_path).info["train_seconds"]
    assert t2 > 0
    train_mapper(debug_generator, clip, "a cat", out_dir=tmp_path, config=cfg, resume=True)
    t4 = load_mapper(tmp_path / "last.safetensors").info["train_seconds"]
    assert t4 > t2
