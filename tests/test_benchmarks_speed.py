"""The speed benchmarks run end to end in their tiny CPU modes (their figures are not checked: benchmarks
measure speed, tests only that they work and that their rows are complete)."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _load(name):
    """benchmarks.<name>, imported as `python -m benchmarks.<name>` from the repository root would."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.{name}")


def test_benchmarks_run_as_modules_without_sys_path_edits():
    edits = [f"{p.name}:{i}" for p in sorted(BENCH.glob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if "sys.path" in line]
    assert not edits, f"benchmarks edit sys.path: {edits}"
    r = subprocess.run([sys.executable, "-m", "benchmarks.prompt_directions", "--help"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr[-2000:]


def test_gpu_benchmark_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu.md"
    rows = _load("gpu").main(["--tiny", "--device", "cpu", "--compile", "no", "--out", str(out)])
    engines = {r["engine"].split(" (")[0].split(",")[0] for r in rows}
    assert {"generator forward", "optimization at 32", "global directions edit", "mapper edit",
            "exact relevance"} <= engines
    assert all(r["value"] > 0 for r in rows)
    text = out.read_text()
    assert text.startswith("Machine: ") and "load" in text and "| exact relevance" in text


def test_generator_benchmark_tiny_reports_limit_fraction(monkeypatch):
    monkeypatch.setenv("STYLECLIP_KEEP_FREED_MEMORY", "0")  # leave this test process's malloc as it is
    rows = _load("generator").main(["--sizes", "16", "--channel-max", "16", "--rounds", "1", "--bf16", "no"])
    by = {r["variant"]: r for r in rows}
    assert set(by) == {"official fp32", "ours fp32"}
    assert by["ours fp32"]["max_abs_err"] == 0 and by["official fp32"]["max_abs_err"] < 1e-4
    assert 0 < by["ours fp32"]["of_limit"] and by["ours fp32"]["gflop"] > 0


@pytest.mark.slow
def test_optimization_benchmark_tiny():
    variants = "official,ours,ours freeing,ours ckpt,ours bf16,ours ckpt bf16"
    from styleclip.util.runtime import compile_backend_missing

    if compile_backend_missing("cpu") is None:
        variants += ",ours compiled"
    rows = _load("optimization").main(["--sizes", "32", "--tiny", "--steps", "1", "--rounds", "1",
                                       "--variants", variants])
    assert {r["variant"] for r in rows} == set(variants.split(","))
    by = {r["variant"]: r for r in rows}
    assert by["ours ckpt"]["max_err"] == "0.0e+00"  # checkpointing recomputes the same values
    if "ours compiled" in by:  # the same arithmetic, fused: rounding-level differences only
        assert float(by["ours compiled"]["max_err"]) < 1e-3


def test_prompt_directions_page_flags_prompts_clip_cannot_find():
    pd = _load("prompt_directions")

    rows = [{"prompt": "a face with a mohawk", "base": 0.17, "precision": 1.0, "precision_raw": 0.6,
             "cos_engine": 0.95, "cos_text": 0.75},
            {"prompt": "a bald face", "base": 0.15, "precision": 0.10, "precision_raw": 0.47,
             "cos_engine": -0.03, "cos_text": 0.11}]
    text = pd.page(rows, "test machine", "python -m benchmarks.prompt_directions")
    assert "| a bald face **(CLIP cannot find it)** | 0.15 | 0.10 |" in text
    assert "| a face with a mohawk | 0.17 | 1.00 |" in text
    assert "(1 of 2): 'a bald face'" in text
