"""Style space: statistics, channel relevance (exact, batched, resumable, fast estimate), delta_t, delta_s."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from styleclip import stylespace as ss
from styleclip.store.cache import cache_folder
from styleclip.store.stylespace_files import load_or_compute_stats
from styleclip.errors import InputError, StyleClipError




@pytest.fixture(scope="module")
def clip():
    from styleclip.factory import load_clip

    return load_clip("debug")


@pytest.fixture(scope="module")
def stats(debug_generator):
    return ss.compute_stats(debug_generator, n=2500, batch=1000)


def test_synthesis_range_chains_to_synthesis_exactly(debug_generator):
    g = debug_generator
    w_plus = g.mapping_plus(torch.randn(3, g.config.style_dim, generator=torch.Generator().manual_seed(1)), 0.7)
    styles = g.styles(w_plus)
    ref = g.synthesis_from_styles(styles)
    for cut in [1, 2, 4, 8, len(g.layers) - 1]:
        state = g.synthesis_range([s if i < cut else None for i, s in enumerate(styles)], 0, cut)
        _, img = g.synthesis_range([s if i >= cut else None for i, s in enumerate(styles)], cut, None, state)
        assert torch.equal(img, ref)
    assert torch.equal(g.synthesis_range(styles)[1], ref)
    with pytest.raises(ValueError, match="deterministic"):
        g.synthesis_range(styles, noise_mode="random")
    with pytest.raises(ValueError, match="state"):
        g.synthesis_range(styles, 3)


def test_stats_match_direct_computation(debug_generator, stats):
    g = debug_generator
    w = ss.sample_w(g, 2500)
    # the first rows do not depend on n: the same z; w equal up to float rounding (BLAS may sum a 7-row batch
    # in another order than a 1000-row one)
    assert torch.allclose(ss.sample_w(g, 7), w[:7], rtol=0, atol=1e-6)
    direct = g.styles(g.broadcast(w))  # every W+ row truncated (TF GetCode.py)
    for k, s in enumerate(direct):
        assert torch.allclose(stats.mean[k], s.double().mean(0).float(), atol=1e-5)
        assert torch.allclose(stats.std[k], s.double().std(0, unbiased=False).float(), atol=1e-5)
    assert stats.meta["n"] == 2500 and stats.meta["truncation"] == 0.7


def test_stats_save_load_and_cache(debug_generator, stats, tmp_path):
    g = debug_generator
    loaded = ss.StyleStats.load(stats.save(tmp_path / "s.safetensors"), g)
    assert all(torch.equal(a, b) for a, b in zip(loaded.mean + loaded.std, stats.mean + stats.std))
    first = load_or_compute_stats(g, n=1000)
    cached = list(cache_folder("stats").glob("stats-*.safetensors"))
    assert len(cached) == 1
    again = load_or_compute_stats(g, n=1000)
    assert torch.equal(first.std[3], again.std[3])
    bad = ss.StyleStats(stats.mean[:-1], stats.std[:-1])
    with pytest.raises(StyleClipError, match="do not fit"):
        bad.check(g)


def test_relevance_batched_equals_naive_and_rows_unit(debug_generator, clip, stats):
    import copy

    # in float64, so that 1e-5 measures the algorithm, not float32 rounding of two evaluation orders
    g, clip = copy.deepcopy(debug_generator).double(), copy.deepcopy(clip).double()
    layers = [3, 9]  # a middle layer (non-trivial reuse of the layers below) and the last conv layer
    fast_path = ss.compute_relevance(g, clip, stats, n_images=3, layers=layers, batch_size=5, image_batch=2,
                                     channel_block=7)
    naive = ss.compute_relevance_naive(g, clip, stats, n_images=3, layers=layers)
    assert fast_path.fs3.shape == (32 + 16, 32)
    assert torch.allclose(fast_path.fs3.norm(dim=1), torch.ones(48), atol=1e-5)
    assert (fast_path.fs3 - naive.fs3).abs().max() < 1e-5
    assert fast_path.layers == (3, 9)


def test_default_layers_follow_the_table(debug_generator):
    from styleclip.nets.stylegan2 import GeneratorConfig, style_layer_table

    class G:  # the 1024 layer table without building the network
        layers = style_layer_table(GeneratorConfig(size=1024))

    assert sum(G.layers[k].channels for k in ss.relevance_layers(G)) == 5376
    assert sum(G.layers[k].channels for k in ss.relevance_layers(G, all_layers=True)) == 6048
    assert ss.relevance_layers(debug_generator) == [0, 2, 3, 5, 6, 8, 9]


def test_relevance_resumes_after_interruption(debug_generator, clip, stats, tmp_path):
    g = debug_generator
    kw = dict(n_images=2, layers=[6, 9], batch_size=8, image_batch=1, channel_block=8)
    ref = ss.compute_relevance(g, clip, stats, **kw)
    ckpt = tmp_path / "run.partial"
    calls = []

    def boom(done, total):
        calls.append(done)
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ss.compute_relevance(g, clip, stats, checkpoint=ckpt, progress=boom, **kw)
    assert (ckpt / "rank0.npz").is_file()
    seen = []
    resumed = ss.compute_relevance(g, clip, stats, checkpoint=ckpt, progress=lambda d, t: seen.append((d, t)), **kw)
    total = sum(-(-g.layers[k].channels // 8) for k in (6, 9))
    assert seen[0] == (3, total) and seen[-1] == (total, total)  # started where it stopped
    assert torch.equal(resumed.fs3, ref.fs3)
    assert not ckpt.exists()
    a, b = resumed.save(tmp_path / "a.npy"), ref.save(tmp_path / "b.npy")
    assert a.read_bytes() == b.read_bytes()
    assert json.loads((tmp_path / "a.npy.json").read_text())["layers"] == [6, 9]


def test_stats_resume_from_checkpoint_folder(debug_generator, stats, tmp_path):
    calls = []

    def boom(done, total):
        calls.append((done, total))
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ss.compute_stats(debug_generator, n=2500, batch=1000, checkpoint=tmp_path / "st", progress=boom)
    seen = []
    again = ss.compute_stats(debug_generator, n=2500, batch=1000, checkpoint=tmp_path / "st",
                             progress=lambda d, t: seen.append((d, t)))
    assert calls == [(1, 3), (2, 3)] and seen == [(3, 3)]  # the third batch only
    for a, b in zip(again.mean + again.std, stats.mean + stats.std):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not (tmp_path / "st").exists()


def test_import_official_layout_zero_fills(debug_generator, tmp_path):
    g = debug_generator
    rows = 32 + 32 + 32  # conv layers 0, 2, 3 only
    fs3 = F.normalize(torch.randn(rows, 32), dim=1).numpy()
    np.save(tmp_path / "fs3.npy", fs3)
    rel = ss.Relevance.load(tmp_path / "fs3.npy", g)
    assert rel.layers == (0, 2, 3)
    full = rel.full(g)
    assert full[1] is None and torch.equal(full[5], torch.zeros(32, 32)) and torch.equal(full[2], rel.fs3[32:64])
    np.save(tmp_path / "bad.npy", fs3[:40])
    with pytest.raises(StyleClipError, match="do not match"):
        ss.Relevance.load(tmp_path / "bad.npy", g)


def _direct_delta_s(g, rel, stats, dt, beta):
    """SPEC 3.5 written out per channel."""
    r = (rel.fs3 @ dt).tolist()
    kept = [abs(x) >= beta for x in r]
    m = max(abs(x) for x, k in zip(r, kept) if k)
    out = [torch.zeros(layer.channels) for layer in g.layers]
    row = 0
    for k in rel.layers:
        for c in range(g.layers[k].channels):
            if kept[row]:
                out[k][c] = r[row] / m * float(stats.std[k][c])
            row += 1
    return out, sum(kept)


def test_delta_s_formula_auto_beta_and_beta_too_high(debug_generator, clip, stats):
    g = debug_generator
    gen = torch.Generator().manual_seed(0)
    rel = ss.Relevance(F.normalize(torch.randn(32 * 3, 32, generator=gen), dim=1), (0, 2, 3))
    dt = ss.text_direction(clip, "a face", "a smiling face")
    assert abs(float(dt.norm()) - 1) < 1e-6
    ds, kept = ss.delta_s(g, rel, stats, dt, 0.2)
    ref, ref_kept = _direct_delta_s(g, rel, stats, dt, 0.2)
    assert kept == ref_kept > 0
    for a, b in zip(ds, ref):
        assert torch.allclose(a, b, atol=1e-6)
    assert all(float(ds[layer.index].abs().sum()) == 0 for layer in g.layers if layer.kind == "torgb")
    assert float(ds[5].abs().sum()) == 0  # a conv layer without relevance rows
    beta = ss.auto_beta(rel, dt, k=20)
    assert ss.count_kept(rel, dt, beta) > 20 or beta == 0.1
    if beta < 0.29:
        assert ss.count_kept(rel, dt, round(beta + 0.01, 2)) <= 20
    with pytest.raises(InputError, match="beta too high.*lower beta"):
        ss.delta_s(g, rel, stats, dt, 0.99)


def test_fast_estimate_agrees_and_resumes(debug_generator, clip, stats, tmp_path):
    g = debug_generator
    kw = dict(n_images=2, layers=[5, 8, 9])
    exact = ss.compute_relevance(g, clip, stats, **kw)
    fast = ss.estimate_relevance(g, clip, stats, checkpoint=tmp_path / "f", **kw)
    assert torch.allclose(fast.fs3.norm(dim=1), torch.ones(fast.fs3.shape[0]), atol=1e-5)
    cos = (fast.fs3 * exact.fs3).sum(1)
    assert float(cos.mean()) > 0.8, float(cos.mean())  # a linearisation of the same quantity
    assert not (tmp_path / "f").exists()
