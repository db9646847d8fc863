"""The bad-input corpus (issue 21): every class of bad input through the CLI (exactly one `error:` line, exit 1,
no file changed or created) and through the Python API (a StyleClipError subclass).

Classes: 1 unbounded sizes, 2 non-finite values, 3 crafted files, 4 false success, 5 output paths,
6 weights integrity, 7 cryptic messages. Cases are rows of tables; the files come from tests/bad_files.py
(crafted byte by byte) and from `corpus` below (networks with NaN or overflowing weights)."""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bad_files import write_corpus
from styleclip.cli import app
from styleclip.errors import StyleClipError

DEBUG = ["--model", "debug"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Bad files of every reader, plus a few good ones to break with bad options."""
    from PIL import Image

    from styleclip.store.readers import save_generator
    from styleclip.store.mappers import save_mapper
    from styleclip.factory import debug_generator
    from styleclip.nets.mapper import LevelsMapper

    d = tmp_path_factory.mktemp("corpus")
    files = write_corpus(d)
    g = debug_generator()
    save_generator(g, d / "good.safetensors")
    nan = debug_generator()
    nan.style[1].weight.data[0, 0] = float("nan")
    torch.save({"g_ema": nan.state_dict(), "latent_avg": nan.w_avg}, d / "nan_gen.pt")
    big = debug_generator()  # finite weights whose images overflow to inf
    for name, p in big.named_parameters():
        if name.startswith("to_rgb") and name.endswith(".bias"):
            p.data.fill_(3e38)  # each is finite; their sum over resolutions is not
    torch.save({"g_ema": big.state_dict(), "latent_avg": big.w_avg}, d / "overflow_gen.pt")
    mapper = LevelsMapper(g.num_ws, g.config.style_dim)
    save_mapper(mapper, d / "good_mapper.safetensors", info={"prompt": "x"})
    sd = {f"mapper.{k}": v.clone() for k, v in mapper.state_dict().items()}
    sd[next(iter(sd))].view(-1)[0] = float("inf")
    torch.save({"state_dict": sd, "opts": {"stylegan_size": 32}}, d / "nan_mapper.pt")
    torch.save({"state_dict": {f"mapper.{k}": v for k, v in mapper.state_dict().items()}, "opts": ["not", "opts"]},
               d / "opts_list_mapper.pt")
    torch.save({"state_dict": {f"mapper.{k}": v for k, v in mapper.state_dict().items()},
                "opts": {"stylegan_size": "big"}}, d / "opts_size_mapper.pt")
    torch.save(torch.zeros(0, g.num_ws, g.config.style_dim), d / "empty_batch.pt")
    torch.save(torch.full((1, g.num_ws, g.config.style_dim), float("nan")), d / "nan_latent.pt")
    torch.save(torch.zeros(1, g.config.style_dim).expand(10 ** 6, -1), d / "expanded_latent.pt")
    styles = [torch.zeros(1, layer.channels) for layer in g.layers]
    torch.save({"space": "S", "styles": [s[:0] for s in styles]}, d / "s_empty_batch.pt")
    torch.save({"space": "S", "styles": [torch.full_like(s, float("nan")) for s in styles]}, d / "s_nan.pt")
    torch.save({"space": "S", "styles": [s.expand(10 ** 7, -1) for s in styles]}, d / "s_expanded.pt")
    torch.save({"space": "S", "styles": "not a list"}, d / "s_wrong_type.pt")
    np.save(d / "good_latent.npy", np.zeros((1, g.num_ws, g.config.style_dim), np.float32))
    Image.new("RGB", (1, 1)).save(d / "1x1.png")
    Image.new("RGB", (3, 2000)).save(d / "3x2000.png")
    Image.new("RGB", (64, 64), (200, 180, 160)).save(d / "blank.png")
    (d / "a_file").write_text("not a folder")
    (d / "a_folder").mkdir()
    (d / "existing.png").write_bytes(b"an earlier output")
    files.update({p.name: p for p in d.iterdir()})
    return d


def _snapshot(*folders) -> dict:
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _run_cli(args, corpus, tmp_path, env=None):
    """Run one CLI case; assert the contract: exit 1, exactly one `error:` line (the last), no traceback,
    nothing written or changed in the corpus or the working folder. Returns the error line."""
    args = [a.format(d=corpus, o=tmp_path) for a in args]
    before = _snapshot(corpus, tmp_path)
    res = CliRunner().invoke(app, args, env=env)
    text = res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1, f"{args}: exit {res.exit_code}\n{text[-2000:]}"
    assert isinstance(res.exception, SystemExit), f"{args}: {res.exception!r}"
    assert len(errors) == 1 and res.stderr.strip().splitlines()[-1] == errors[0], f"{args}:\n{res.stderr[-2000:]}"
    assert "Traceback" not in text and "unexpected" not in errors[0], f"{args}: {errors[0]}"
    assert _snapshot(corpus, tmp_path) == before, f"{args}: files changed"
    return errors[0]


# (case id, argv with {d} = corpus folder and {o} = an empty output folder, text the error must contain)
CLI_CASES = [
    # 1 unbounded sizes
    ("faces-size-60000", ["faces", "{d}/blank.png", "--size", "60000"], "--size"),
    ("edit-seeds-1e8", ["edit", "-p", "x", *DEBUG, "--seeds", "0-100000000", "--out", "{o}/e"], "10000 seeds"),
    ("edit-steps-1e12", ["edit", "-p", "x", *DEBUG, "--steps", str(10 ** 12), "--out", "{o}/e"], "--steps"),
    ("invert-steps-1e12", ["invert", "{d}/blank.png", *DEBUG, "--steps", str(10 ** 12), "--out", "{o}/i"], "--steps"),
    ("mapper-num-latents-memory", ["train-mapper", "--prompt", "x", *DEBUG, "--num-latents", "1000000",
                                   "--out", "{o}/m"], "memory"),
    ("relevance-images-huge", ["relevance", *DEBUG, "--images", str(10 ** 9), "--out", "{o}/r.npy"], "--images"),
    ("sweep-too-many-alphas", ["sweep", "--prompt", "x", *DEBUG, "--alphas", ",".join(["1"] * 100),
                               "--out", "{o}/s.png"], "at most"),
    ("toy-train-steps-huge", ["toy", "train", "clip", "--steps", str(10 ** 12), "--out", "{o}/t"], "--steps"),
    # 2 non-finite values
    ("edit-alpha-nan", ["edit", "-p", "x", *DEBUG, "--alpha", "nan", "--out", "{o}/e"], "finite"),
    ("edit-alpha-inf", ["edit", "-p", "x", *DEBUG, "--alpha", "inf", "--out", "{o}/e"], "finite"),
    ("edit-alpha-1e300", ["edit", "-p", "x", *DEBUG, "--alpha", "1e300", "--out", "{o}/e"], "[-100, 100]"),
    ("edit-lr-nan", ["edit", "-p", "x", *DEBUG, "--lr", "nan", "--out", "{o}/e"], "finite"),
    ("edit-l2-inf", ["edit", "-p", "x", *DEBUG, "--l2-lambda", "inf", "--out", "{o}/e"], "finite"),
    ("edit-beta-2", ["edit", "-p", "x", *DEBUG, "--engine", "global", "--beta", "2", "--out", "{o}/e"], "--beta"),
    ("generate-truncation-nan", ["generate", *DEBUG, "--truncation", "nan", "--out", "{o}/f.png"], "finite"),
    ("generate-nan-weights", ["generate", "--checkpoint", "{d}/nan_gen.pt", "--out", "{o}/f.png"], "NaN"),
    ("generate-overflow-keeps-old", ["generate", "--checkpoint", "{d}/overflow_gen.pt", "--out",
                                     "{d}/existing.png"], "NaN or infinite"),
    ("mapper-nan-weights", ["edit", "-p", "x", *DEBUG, "--engine", "mapper", "--mapper", "{d}/nan_mapper.pt",
                            "--out", "{o}/e"], "NaN"),
    ("train-mapper-lr-nan", ["train-mapper", "--prompt", "x", *DEBUG, "--lr", "nan", "--out", "{o}/m"], "finite"),
    ("relevance-stats-samples-0", ["relevance", *DEBUG, "--stats-samples", "0", "--out", "{o}/r.npy"],
     "--stats-samples"),
    ("sweep-alpha-nan", ["sweep", "--prompt", "x", *DEBUG, "--alphas", "nan,1", "--out", "{o}/s.png"], "finite"),
    ("relevance-nan-file", ["edit", "-p", "x", *DEBUG, "--engine", "global", "--relevance", "{d}/nan.npy",
                            "--out", "{o}/e"], "NaN"),
    ("latent-nan", ["edit", "-p", "x", *DEBUG, "--latent", "{d}/nan_latent.pt", "--out", "{o}/e"], "NaN"),
    # 3 crafted files
    *[(f"checkpoint-{name}", ["generate", "--checkpoint", "{d}/" + name, "--out", "{o}/f.png"], name)
      for name in ("deep_record.pkl", "self_reference.pkl", "nested_list.pkl", "huge_ndarray.pkl",
                   "huge_tensor.pkl", "wrong_types.pkl", "wrong_kwargs.pkl", "code.pkl", "empty.pkl",
                   "truncated.pkl", "huge_config.safetensors", "config_wrong_type.safetensors",
                   "huge_safetensors_header.safetensors", "garbage.bin")],
    *[(f"relevance-{name}", ["edit", "-p", "x", *DEBUG, "--engine", "global", "--relevance", "{d}/" + name,
                             "--out", "{o}/e"], name)
      for name in ("empty.npy", "huge_header.npy", "object.npy", "bad_header.npy")],
    *[(f"latent-{name}", ["edit", "-p", "x", *DEBUG, "--latent", "{d}/" + name, "--out", "{o}/e"], name)
      for name in ("empty.npy", "huge_header.npy", "object.npy", "garbage.bin", "expanded_latent.pt",
                       "s_empty_batch.pt", "s_nan.pt", "s_expanded.pt", "s_wrong_type.pt")],
    *[(f"mapper-{name}", ["edit", "-p", "x", *DEBUG, "--engine", "mapper", "--mapper", "{d}/" + name,
                          "--out", "{o}/e"], name)
      for name in ("opts_list_mapper.pt", "opts_size_mapper.pt", "mapper_bad_info.safetensors", "empty.pkl",
                   "code.pkl", "garbage.bin")],
    *[(f"stats-{name}", ["sweep", "--prompt", "x", *DEBUG, "--stats", "{d}/" + name, "--out", "{o}/s.png"], name)
      for name in ("stats_garbage.safetensors", "stats_nan.safetensors", "garbage.bin", "empty.npy")],
    ("image-not-an-image", ["faces", "{d}/not_an_image.png"], "not an image"),
    # 4 false success
    ("edit-batch-size-minus-1", ["edit", "-p", "x", *DEBUG, "--batch-size", "-1", "--out", "{o}/e"], "--batch-size"),
    ("edit-batch-size-0", ["edit", "-p", "x", *DEBUG, "--batch-size", "0", "--out", "{o}/e"], "--batch-size"),
    ("latent-empty-batch-pt", ["edit", "-p", "x", *DEBUG, "--latent", "{d}/empty_batch.pt", "--out", "{o}/e"],
     "empty"),
    ("latent-empty-batch-npy", ["edit", "-p", "x", *DEBUG, "--latent", "{d}/empty_batch.npy", "--out", "{o}/e"],
     "empty"),
    ("latents-empty-folder", ["edit", "-p", "x", *DEBUG, "--latents", "{o}", "--out", "{o}/e"], "no latent files"),
    # 5 output paths (checked before any model loads)
    ("generate-out-is-folder", ["generate", *DEBUG, "--out", "{d}/a_folder"], "is a folder"),
    ("generate-out-under-file", ["generate", *DEBUG, "--out", "{d}/a_file/face.png"], "is a file"),
    ("generate-latent-under-file", ["generate", *DEBUG, "--out", "{o}/f.png", "--save-latent", "{d}/a_file/w.pt"],
     "is a file"),
    ("generate-out-bad-suffix", ["generate", *DEBUG, "--out", "{o}/face.xyz"], "extension"),
    ("generate-same-outputs", ["generate", *DEBUG, "--out", "{o}/f.png", "--save-latent", "{o}/f.png"],
     "same file"),
    ("generate-name-too-long", ["generate", *DEBUG, "--out", "{o}/" + "x" * 300 + ".png"], "longer than"),
    ("edit-out-is-file", ["edit", "-p", "x", *DEBUG, "--out", "{d}/a_file"], "is a file"),
    ("faces-out-is-file", ["faces", "{d}/blank.png", "--out", "{d}/a_file"], "is a file"),
    ("invert-out-under-file", ["invert", "{d}/blank.png", *DEBUG, "--out", "{d}/a_file/inv"], "is a file"),
    ("relevance-out-folder", ["relevance", *DEBUG, "--out", "{d}/a_folder"], "is a folder"),
    ("sweep-out-under-file", ["sweep", "--prompt", "x", *DEBUG, "--out", "{d}/a_file/s.png"], "is a file"),
    ("convert-onto-itself", ["convert", "{d}/good.safetensors", "{d}/good.safetensors"], "same file"),
    ("convert-dst-suffix", ["convert", "{d}/good.safetensors", "{o}/g.pt"], "extension"),
    ("train-mapper-out-is-file", ["train-mapper", "--prompt", "x", *DEBUG, "--out", "{d}/a_file"], "is a file"),
    ("toy-train-out-is-file", ["toy", "train", "clip", "--steps", "1", "--out", "{d}/a_file"], "is a file"),
    ("weights-dest-is-file", ["weights", "download", "mapper-mohawk", "--dest", "{d}/a_file"], "is a file"),
    # 7 cryptic messages
    ("faces-1x1", ["faces", "{d}/1x1.png"], "1x1 pixels"),
    ("faces-3x2000", ["faces", "{d}/3x2000.png"], "3x2000 pixels"),
    ("edit-image-1x1", ["edit", "-p", "x", *DEBUG, "--image", "{d}/1x1.png", "--out", "{o}/e"], "1x1 pixels"),
    ("generate-seed-2-64", ["generate", *DEBUG, "--seed", str(2 ** 64), "--out", "{o}/f.png"], "--seed"),
    ("generate-seed-negative", ["generate", *DEBUG, "--seed", "-1", "--out", "{o}/f.png"], "--seed"),
    ("edit-seeds-2-64", ["edit", "-p", "x", *DEBUG, "--seeds", f"0,{2 ** 64}", "--out", "{o}/e"], "seeds"),
    ("edit-seeds-garbage", ["edit", "-p", "x", *DEBUG, "--seeds", "a-b", "--out", "{o}/e"], "seeds"),
    *[(f"device-{dev or 'empty'}", ["generate", *DEBUG, "--device", dev, "--out", "{o}/f.png"], "device")
      for dev in ("tpu", "meta", "", "cuda:x", "cpu:0:1")],
    ("edit-prompt-1M", ["edit", "-p", "x" * 10 ** 6, *DEBUG, "--out", "{o}/e"], "characters"),
    ("edit-prompt-empty", ["edit", "-p", " ", *DEBUG, "--steps", "1", "--out", "{o}/e"], "empty"),
    ("edit-engine-unknown", ["edit", "-p", "x", *DEBUG, "--engine", "magic", "--out", "{o}/e"], "engine"),
    ("serve-port-0", ["serve", *DEBUG, "--port", "0"], "--port"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case, corpus, tmp_path, monkeypatch):
    _, args, expected = case
    monkeypatch.chdir(tmp_path)
    line = _run_cli(args, corpus, tmp_path)
    assert expected.lower() in line.lower(), line


def test_cli_case_ids_unique():
    ids = [c[0] for c in CLI_CASES]
    assert len(ids) == len(set(ids))


def test_cli_unwritable_folder(corpus, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = _run_cli(["generate", *DEBUG, "--out", "{o}/locked/f.png"], corpus, tmp_path)
        assert "permission" in line
    finally:
        locked.chmod(0o700)


# ---- 6 weights integrity -----------------------------------------------------------------------------
@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """A weights folder holding a corrupt copy of a known mapper, and a network that must never be used."""
    import urllib.request

    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "mohawk.pt").write_bytes(b"\x80\x02 corrupt")
    monkeypatch.setenv("STYLECLIP_WEIGHTS_DIR", str(folder))

    def no_network(*a, **k):
        raise AssertionError("the network was used")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return folder


def test_weights_verify_reports_corrupt_file_without_hash(weights_dir, tmp_path):
    res = CliRunner().invoke(app, ["weights", "verify"])
    assert res.exit_code == 1, res.stdout + res.stderr
    assert "mapper-mohawk  CORRUPT" in res.stdout
    assert res.stderr.strip().startswith("error:") and "mapper-mohawk" in res.stderr


def test_weights_download_corrupt_present_offline(weights_dir, tmp_path):
    before = (weights_dir / "mohawk.pt").read_bytes()
    line = _run_cli(["weights", "download", "mapper-mohawk"], weights_dir, tmp_path)
    assert "corrupt" in line and "STYLECLIP_OFFLINE" in line
    assert (weights_dir / "mohawk.pt").read_bytes() == before


@pytest.mark.parametrize("name", ["stylegan2-ffhq-1024", "mapper-afro", "clip-vit-b32-openai"])
def test_weights_download_offline_never_touches_network(weights_dir, tmp_path, name):
    line = _run_cli(["weights", "download", name], weights_dir, tmp_path)
    assert "STYLECLIP_OFFLINE" in line


def test_download_replaces_corrupt_file_only_with_a_good_one(tmp_path, monkeypatch):
    """A corrupt present file is re-downloaded; a failed download leaves it, and no .partial, behind."""
    from styleclip.store import registry as pretrained

    monkeypatch.delenv("STYLECLIP_OFFLINE")
    (tmp_path / "mohawk.pt").write_bytes(b"corrupt")
    orphan, recent = tmp_path / "afro.pt.partial", tmp_path / "bobcut.pt.partial"  # left by killed downloads
    orphan.write_bytes(b"x")
    recent.write_bytes(b"x")
    os.utime(orphan, (0, 0))

    def failing(url, partial, **kw):
        partial.write_bytes(b"half")
        raise pretrained._DownloadFailed("cut")

    monkeypatch.setattr(pretrained, "_fetch_resuming", failing)
    with pytest.raises(StyleClipError):
        pretrained.download("mapper-mohawk", tmp_path, progress=False, replace=True)
    assert (tmp_path / "mohawk.pt").read_bytes() == b"corrupt"

    def good(url, partial, **kw):
        partial.write_bytes(b"fresh")

    monkeypatch.setattr(pretrained, "_fetch_resuming", good)
    assert pretrained.download("mapper-mohawk", tmp_path, progress=False, replace=True).read_bytes() == b"fresh"
    assert sorted(p.name for p in tmp_path.glob("*.partial")) == ["bobcut.pt.partial"]  # a week old: removed


# ---- the Python API: a StyleClipError subclass for every class ---------------------------------------------
def _api_cases(d: Path):
    from styleclip import stylespace as ss
    from styleclip.util.checks import read_npy
    from styleclip.store.readers import read_generator
    from styleclip.editors.global_directions import GlobalDirectionsConfig
    from styleclip.store.mappers import load_mapper
    from styleclip.training.mapper import MapperTrainConfig, load_latents
    from styleclip.editors.optimization import OptimizationConfig
    from styleclip.factory import debug_generator, load_generator, resolve_device
    from styleclip.photo.faces import aligned_faces, load_image
    from styleclip.photo.invert import InversionConfig
    from styleclip.util.outputs import Outputs, check_dir, check_file
    from styleclip.sources import load_latent_file, parse_seeds
    from styleclip.types import Latent, Prompt

    g = debug_generator()
    return [
        ("parse-seeds-1e8", lambda: parse_seeds("0-100000000")),
        ("parse-seeds-2-64", lambda: parse_seeds(str(2 ** 64))),
        ("optimize-steps-1e12", lambda: OptimizationConfig(steps=10 ** 12)),
        ("optimize-lr-nan", lambda: OptimizationConfig(lr=math.nan)),
        ("invert-steps-1e12", lambda: InversionConfig(steps=10 ** 12)),
        ("mapper-train-lr-nan", lambda: MapperTrainConfig(lr=math.nan)),
        ("mapper-train-batch-0", lambda: MapperTrainConfig(batch_size=0)),
        ("global-alpha-inf", lambda: GlobalDirectionsConfig(alpha=math.inf)),
        ("global-beta-nan", lambda: GlobalDirectionsConfig(beta=math.nan)),
        ("prompt-strength-nan", lambda: Prompt("x", strength=math.nan)),
        ("prompt-1M", lambda: Prompt("x" * 10 ** 6)),
        ("latent-empty", lambda: Latent(torch.zeros(0, 8, 64))),
        ("stats-n-0", lambda: ss.compute_stats(g, n=0)),
        ("crop-size-60000", lambda: aligned_faces(d / "blank.png", size=60000)),
        *[(f"device-{v or 'empty'}", lambda v=v: resolve_device(v)) for v in ("tpu", "meta", "", "xla")],
        *[(f"generator-{n}", lambda n=n: read_generator(d / n))
          for n in ("deep_record.pkl", "self_reference.pkl", "huge_ndarray.pkl", "huge_tensor.pkl",
                    "wrong_types.pkl", "wrong_kwargs.pkl", "code.pkl", "empty.pkl", "truncated.pkl",
                    "huge_config.safetensors", "config_wrong_type.safetensors",
                    "huge_safetensors_header.safetensors", "garbage.bin")],
        ("generator-nan", lambda: load_generator(d / "nan_gen.pt", cache=False)),
        *[(f"mapper-{n}", lambda n=n: load_mapper(d / n))
          for n in ("nan_mapper.pt", "opts_list_mapper.pt", "opts_size_mapper.pt", "mapper_bad_info.safetensors",
                    "code.pkl", "empty.pkl", "garbage.bin", "huge_safetensors_header.safetensors")],
        *[(f"relevance-{n}", lambda n=n: ss.Relevance.load(d / n, g))
          for n in ("empty.npy", "huge_header.npy", "object.npy", "bad_header.npy", "nan.npy", "empty_batch.npy")],
        *[(f"npy-{n}", lambda n=n: read_npy(d / n, "array")) for n in ("empty.npy", "huge_header.npy")],
        *[(f"latent-{n}", lambda n=n: load_latent_file(d / n, g))
          for n in ("empty.npy", "huge_header.npy", "empty_batch.npy", "empty_batch.pt", "nan_latent.pt",
                    "expanded_latent.pt", "code.pkl", "s_empty_batch.pt", "s_nan.pt", "s_expanded.pt",
                    "s_wrong_type.pt")],
        *[(f"train-latents-{n}", lambda n=n: load_latents(d / n, num_ws=8, style_dim=64))
          for n in ("empty_batch.pt", "nan_latent.pt", "code.pkl", "garbage.bin")],
        *[(f"stats-{n}", lambda n=n: ss.StyleStats.load(d / n, g))
          for n in ("stats_garbage.safetensors", "stats_nan.safetensors", "garbage.bin", "empty.npy")],
        *[(f"image-{n}", lambda n=n: load_image(d / n)) for n in ("1x1.png", "3x2000.png", "not_an_image.png",
                                                                   "garbage.bin")],
        ("out-file-under-file", lambda: check_file(d / "a_file" / "x.png")),
        ("out-file-is-folder", lambda: check_file(d / "a_folder")),
        ("out-dir-is-file", lambda: check_dir(d / "a_file")),
        ("outputs-write-fails", lambda: Outputs().write(d / "a_file" / "x", lambda tmp: tmp.write_text("x"))),
    ]


API_IDS = [c[0] for c in _api_cases(Path("."))]


@pytest.mark.parametrize("case_id", API_IDS)
def test_api_bad_input(case_id, corpus):
    fn = dict(_api_cases(corpus))[case_id]
    before = _snapshot(corpus)
    with pytest.raises(StyleClipError) as info:
        fn()
    assert "\n" not in str(info.value) and str(info.value)
    assert _snapshot(corpus) == before


def test_api_nan_loss_is_a_styleclip_error(corpus):
    """Optimization whose images overflow: NumericalError (not FloatingPointError) and no result."""
    from styleclip.editors.optimization import OptimizationConfig, OptimizationEditor
    from styleclip.errors import NumericalError
    from styleclip.factory import load_clip, load_generator
    from styleclip.sources import latents_from_seeds
    from styleclip.types import Prompt

    g = load_generator(corpus / "overflow_gen.pt", cache=False)
    editor = OptimizationEditor(g, load_clip("debug"), config=OptimizationConfig(steps=2))
    with pytest.raises(NumericalError, match="NaN"):
        editor.edit(latents_from_seeds(g, [0]), Prompt("x"))


def test_app_caps_text():
    from styleclip.app.actions import MAX_TEXT, _text

    from styleclip.errors import InputError

    assert _text("  a  smiling face ", "prompt") == "a smiling face"
    with pytest.raises(InputError, match="characters"):
        _text("x" * (MAX_TEXT + 1), "prompt")


# ---- the rules themselves -------------------------------------------------------------------------------
def test_outputs_commit_all_or_nothing(tmp_path):
    from styleclip.util.outputs import TEMP_PREFIX, Outputs

    (tmp_path / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with Outputs() as out:
            out.write(tmp_path / "old.txt", lambda p: p.write_text("new"))
            out.write(tmp_path / "new" / "deep" / "b.txt", lambda p: p.write_text("b"))
            raise RuntimeError("the run failed after staging")
    assert (tmp_path / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["old.txt"]  # created folders removed too
    with Outputs() as out:
        out.write(tmp_path / "old.txt", lambda p: p.write_text("new"))
        out.write(tmp_path / "new" / "b.txt", lambda p: p.write_text("b"))
        assert (tmp_path / "old.txt").read_text() == "old"  # nothing visible before the commit
    assert (tmp_path / "old.txt").read_text() == "new" and (tmp_path / "new" / "b.txt").read_text() == "b"
    assert not list(tmp_path.rglob(TEMP_PREFIX + "*"))


def test_outputs_clean_orphans_of_dead_runs(tmp_path):
    from styleclip.util.outputs import TEMP_PREFIX, write_atomic

    orphan = tmp_path / f"{TEMP_PREFIX}{2 ** 22 + 12345}-1.png"  # no such pid
    orphan.write_bytes(b"left by a killed run")
    write_atomic(tmp_path / "x.txt", lambda p: p.write_text("x"))
    assert not orphan.exists() and (tmp_path / "x.txt").read_text() == "x"


def test_short_name_keeps_names_distinct_and_short():
    from styleclip.util.outputs import short_name

    a, b = short_name("a" * 400 + "1_edited.png"), short_name("a" * 400 + "2_edited.png")
    assert a != b and a.endswith(".png") and len(a.encode()) <= 100
    assert short_name("seed0_edited.png") == "seed0_edited.png"
    assert "/" not in short_name("../../etc/passwd")


def test_long_prompt_mapper_folder_is_shortened(tmp_path, monkeypatch):
    """train-mapper's default folder comes from the prompt: a 500-character prompt gets a short name."""
    from styleclip import cli

    monkeypatch.chdir(tmp_path)
    calls = {}

    def fake_train(*a, out_dir=None, **k):
        calls["out"] = Path(out_dir)
        raise StyleClipError("stopped here")

    monkeypatch.setattr("styleclip.training.mapper.train_mapper", fake_train)
    res = CliRunner().invoke(cli.app, ["train-mapper", "--prompt", "curly hair " * 45, *DEBUG, "--steps", "1",
                                       "--num-latents", "4", "--id-lambda", "0"])
    assert res.exit_code == 1 and "stopped here" in res.stderr
    assert len(calls["out"].name.encode()) <= 100 and calls["out"].name.startswith("curly_hair_curly")


def test_good_inputs_still_work(corpus, tmp_path):
    """The checks refuse bad input only: a real edit from a good latent writes all its files."""
    out = tmp_path / "e"
    res = CliRunner().invoke(app, ["edit", "-p", "x", *DEBUG, "--steps", "1", "--latent",
                                   str(corpus / "good_latent.npy"), "--out", str(out)])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert sorted(p.name for p in (out / "x-optimize").iterdir()) == \
        ["good_before_after.png", "good_edited.png", "good_latent.pt"]  # the run's own folder: <prompt>-<engine>
