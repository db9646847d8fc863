"""Fuzz targets for every file reader (issue 21): generator checkpoints (our safetensors, rosinality .pt, NVIDIA
.pkl through the restricted unpickler), mappers, relevance .npy, latents, style statistics, images.

Property: a reader returns, or raises a StyleClipError subclass, whatever the bytes; never another exception,
never a huge allocation. Inputs are valid tiny files mutated by hypothesis (byte flips, truncation, inserted
and overwritten runs, spliced-in crafted files). The crash corpus (tests/data/fuzz: the crafted files of
tests/bad_files.py and anything a fuzz run found) is replayed through every reader in the default suite; the
fuzzing itself (W+ and S-space latents alike) is `slow` and bounded: STYLECLIP_FUZZ_EXAMPLES examples per reader (default 200)."""
from __future__ import annotations

import hashlib
import json
import os
import resource
from pathlib import Path

import numpy as np
import pytest
import torch

from styleclip.errors import StyleClipError

CRASH_DIR = Path(__file__).parent / "data" / "fuzz"
SUFFIXES = {"generator": ".pkl", "mapper": ".pt", "relevance": ".npy", "latent": ".npy", "stats": ".safetensors",
            "image": ".png"}


def _tiny_generator():
    from styleclip.nets.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(size=8, style_dim=8, n_mlp=1, channel_base=16, channel_max=8,
                                  channel_multiplier=1))
    return g.eval().requires_grad_(False)


def _readers(g):
    """name -> read(path) for every reader, each given the tiny generator where it needs one."""
    from styleclip import stylespace as ss
    from styleclip.store.readers import build_generator, read_generator
    from styleclip.store.mappers import load_mapper
    from styleclip.photo.faces import load_image
    from styleclip.sources import load_latent_file

    return {
        "generator": lambda p: build_generator(*read_generator(p), source=str(p)),
        "mapper": load_mapper,
        "relevance": lambda p: ss.Relevance.load(p, g),
        "latent": lambda p: load_latent_file(p, g),
        "stats": lambda p: ss.StyleStats.load(p, g),
        "image": load_image,
    }


def _seeds(folder: Path, g) -> dict[str, list[Path]]:
    """Valid tiny files of every format, the fuzzers' starting points."""
    from PIL import Image

    from helpers import write_nvidia_pkl
    from styleclip import stylespace as ss
    from styleclip.store.readers import save_generator
    from styleclip.store.mappers import save_mapper
    from styleclip.nets.mapper import LevelsMapper

    folder.mkdir(parents=True, exist_ok=True)
    save_generator(g, folder / "g.safetensors")
    sd = {k: v for k, v in g.state_dict().items()}
    torch.save({"g_ema": sd, "latent_avg": g.w_avg}, folder / "g.pt")
    write_nvidia_pkl(folder / "g.pkl", sd, size=8, n_mlp=1, channel_base=16, channel_max=8,
                     trap_file=str(folder / "trap"))
    m = LevelsMapper(g.num_ws, 8)
    save_mapper(m, folder / "m.safetensors", info={"prompt": "x"})
    torch.save({"state_dict": {f"mapper.{k}": v for k, v in m.state_dict().items()},
                "opts": {"stylegan_size": 8, "description": "x"}}, folder / "m.pt")
    rows = sum(layer.channels for layer in ss.conv_layers(g))
    np.save(folder / "r.npy", np.ones((rows, 4), np.float32) / 2)
    np.save(folder / "w.npy", np.zeros((2, g.num_ws, 8), np.float32))
    torch.save(torch.zeros(1, g.num_ws, 8), folder / "w.pt")
    torch.save({"space": "S", "styles": [torch.zeros(1, x.channels) for x in g.layers]}, folder / "s_latent.pt")
    ss.StyleStats([torch.zeros(x.channels) for x in g.layers], [torch.ones(x.channels) for x in g.layers]).save(
        folder / "s.safetensors")
    Image.new("RGB", (40, 40), (10, 200, 30)).save(folder / "i.png")
    Image.new("RGB", (40, 40), (10, 200, 30)).save(folder / "i.jpg", quality=50)
    return {"generator": [folder / n for n in ("g.safetensors", "g.pt", "g.pkl")],
            "mapper": [folder / "m.safetensors", folder / "m.pt"], "relevance": [folder / "r.npy"],
            "latent": [folder / "w.npy", folder / "w.pt", folder / "s_latent.pt"], "stats": [folder / "s.safetensors"],
            "image": [folder / "i.png", folder / "i.jpg"]}


def _holds(read, path: Path) -> None:
    """The property: returns or raises a one-line StyleClipError."""
    try:
        read(path)
    except StyleClipError as e:
        assert str(e) and "\n" not in str(e)


def _max_rss_gb() -> float:
    """Peak resident memory of this process so far (a test's own peak shows as growth of it)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


# ---- default suite: replay the crash corpus through every reader ------------------------------------------
def _crash_files() -> list[Path]:
    return sorted(p for p in CRASH_DIR.iterdir() if p.is_file() and p.name != "README.md")


@pytest.mark.parametrize("reader", sorted(SUFFIXES))
def test_crash_corpus_replays(reader, tmp_path):
    peak = _max_rss_gb()
    g = _tiny_generator()
    read = _readers(g)[reader]
    files = _crash_files()
    assert len(files) >= 20
    for f in files:
        for suffix in {f.suffix, SUFFIXES[reader]}:  # as named, and under the reader's own suffix
            p = tmp_path / (f.stem + suffix)
            p.write_bytes(f.read_bytes())
            _holds(read, p)
    assert _max_rss_gb() - peak < 1  # no input made the reader allocate a GiB


def test_crash_corpus_is_current():
    """tests/data/fuzz holds every crafted file of tests/bad_files.py, as written now."""
    from bad_files import write_corpus

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for name, p in write_corpus(Path(d), small=True).items():
            kept = CRASH_DIR / name
            assert kept.is_file() and kept.read_bytes() == p.read_bytes(), name


def test_seeds_are_read(tmp_path):
    """The fuzzers start from files the readers accept (else the mutations test the wrong thing)."""
    g = _tiny_generator()
    readers = _readers(g)
    for reader, paths in _seeds(tmp_path, g).items():
        for p in paths:
            readers[reader](p)


# ---- slow: the fuzzing ---------------------------------------------------------------------------------
def _mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for kind, pos, blob in ops:
        if not buf:
            buf = bytearray(blob)
            continue
        i = pos % (len(buf) + 1)
        if kind == "flip":
            if i < len(buf):
                buf[i] ^= 1 << (pos % 8)
        elif kind == "truncate":
            del buf[i:]
        elif kind == "insert":
            buf[i:i] = blob
        elif kind == "overwrite":
            buf[i:i + len(blob)] = blob
        elif kind == "int":  # a length or shape field turned huge, zero or negative
            value = [0, 1, 2 ** 31 - 1, 2 ** 32, 2 ** 40, 2 ** 63 - 1, 2 ** 64 - 1][pos % 7]
            buf[i:i + 8] = value.to_bytes(8, "little")
    return bytes(buf)


@pytest.mark.slow
@pytest.mark.parametrize("reader", sorted(SUFFIXES))
def test_fuzz_reader(reader, tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    peak = _max_rss_gb()
    g = _tiny_generator()
    read = _readers(g)[reader]
    seeds = [p.read_bytes() for p in _seeds(tmp_path / "seeds", g)[reader]]
    splices = [p.read_bytes()[:4096] for p in _crash_files()]
    examples = int(os.environ.get("STYLECLIP_FUZZ_EXAMPLES", "200"))
    op = st.tuples(st.sampled_from(["flip", "flip", "truncate", "insert", "overwrite", "int"]),
                   st.integers(0, 2 ** 24), st.binary(max_size=64) | st.sampled_from(splices))
    target = tmp_path / f"input{SUFFIXES[reader]}"

    @settings(max_examples=examples, deadline=None, derandomize=False, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(range(len(seeds))), st.lists(op, min_size=1, max_size=6))
    def fuzz(seed_index, ops):
        data = _mutate(seeds[seed_index], ops)
        target.write_bytes(data)
        try:
            _holds(read, target)
        except BaseException:
            _keep_crash(reader, data)
            raise

    fuzz()
    assert _max_rss_gb() - peak < 1


def _keep_crash(reader: str, data: bytes) -> None:
    """A failing input goes into the crash corpus, replayed by the default suite from then on."""
    name = f"found-{reader}-{hashlib.sha256(data).hexdigest()[:12]}{SUFFIXES[reader]}"
    (CRASH_DIR / name).write_bytes(data)
    index = CRASH_DIR / "found.json"
    found = json.loads(index.read_text()) if index.is_file() else {}
    found[name] = reader
    index.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
