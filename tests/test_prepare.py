"""`styleclip prepare`: bring your own generator, then `--checkpoint` finds its statistics and relevance."""
import json

import torch
from typer.testing import CliRunner

from styleclip import stylespace as ss
from styleclip.store.prepared import find_prepared
from styleclip.store.stylespace_files import load_or_compute_relevance, load_or_compute_stats
from styleclip.util.fingerprint import generator_fingerprint
from styleclip.cli import app
from styleclip.factory import load_clip, load_generator

runner = CliRunner()


def test_prepare_records_and_later_runs_find_it(tmp_path):
    ckpt = tmp_path / "my.safetensors"
    r = runner.invoke(app, ["convert", "debug", str(ckpt)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "prepared"
    r = runner.invoke(app, ["prepare", "--checkpoint", str(ckpt), "--clip", "debug", "--out", str(out),
                            "--images", "1", "--stats-samples", "1000", "--fast"])
    assert r.exit_code == 0, r.output
    assert "not a face generator" in r.output  # random debug images: no face found, identity loss off
    record = json.loads((out / "prepared.json").read_text())
    g = load_generator(ckpt)
    assert record["generator"] == generator_fingerprint(g) and record["faces"] is False
    assert record["relevance_method"] == "fast" and record["clip"] == "debug"
    assert find_prepared(g)[0] == out.resolve()

    clip = load_clip("debug")
    stats = load_or_compute_stats(g)  # found, not computed (the prepared run used 1000 samples)
    assert stats.meta["n"] == 1000
    rel = load_or_compute_relevance(g, clip, stats, compute=False)
    assert torch.equal(rel.fs3, ss.Relevance.load(out / "fs3.npy", g).fs3)

    r = runner.invoke(app, ["edit", "--engine", "optimize", "--steps", "1", "--checkpoint", str(ckpt),
                            "--prompt", "a smiling face", "--out", str(tmp_path / "edits")])
    assert r.exit_code == 0, r.output
    assert "identity loss off" in r.output and "not a face generator" in r.output
    r = runner.invoke(app, ["edit", "--engine", "global", "--checkpoint", str(ckpt), "--beta", "0.05",
                            "--prompt", "a smiling face", "--out", str(tmp_path / "edits")])
    assert r.exit_code == 0, r.output

    r = runner.invoke(app, ["prepare", "--out", str(out)])
    assert r.exit_code == 1 and "give --checkpoint" in r.output
