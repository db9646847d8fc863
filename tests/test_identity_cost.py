"""Refinements of the global direction: decorrelated channel scores, the identity cost of style channels and
identity damping (stylespace.delta_s, styleclip.stylespace.identity_cost)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from styleclip.stylespace import identity_cost as ic
from styleclip import stylespace as ss
from styleclip.errors import CheckpointError, StyleClipError
from styleclip.encoders.identity import debug_identity


@pytest.fixture(scope="module")
def stats(debug_generator):
    return ss.compute_stats(debug_generator, n=2000, batch=1000)


@pytest.fixture(scope="module")
def identity():
    return debug_identity()


def _relevance(g, layers=(0, 2, 3), d=16, seed=0):
    rows = sum(g.layers[k].channels for k in layers)
    gen = torch.Generator().manual_seed(seed)
    return ss.Relevance(F.normalize(torch.randn(rows, d, generator=gen), dim=1), tuple(layers))


def test_refinements_off_give_the_papers_delta_s(debug_generator, stats):
    g = debug_generator
    rel = _relevance(g)
    dt = F.normalize(torch.randn(16, generator=torch.Generator().manual_seed(1)), dim=0)
    paper, kept = ss.delta_s(g, rel, stats, dt, 0.2)
    same, kept2 = ss.delta_s(g, rel, stats, dt, 0.2, ridge=None, identity_cost=torch.ones(rel.fs3.shape[0]),
                             identity_damping=None)
    assert kept == kept2 and all(torch.equal(a, b) for a, b in zip(paper, same))


def test_decorrelated_scores_balance_a_compound_direction(debug_generator):
    """Many channels along e1, few along e2, delta_t between them: the paper's scores make the image change
    mostly e1; the ridge scores weight the few e2 channels up so the change points along delta_t; a huge ridge
    gives the paper's scores back."""
    g = debug_generator
    d = 8
    e1, e2 = torch.eye(d)[0], torch.eye(d)[1]
    noise = 0.05 * torch.randn(40, d, generator=torch.Generator().manual_seed(2))
    fs3 = F.normalize(torch.cat([e1.expand(36, d), e2.expand(4, d)]) + noise, dim=1)
    rel = ss.Relevance(fs3, ())
    dt = F.normalize(e1 + e2, dim=0)
    r = ss.channel_scores(rel, dt)
    a = ss.decorrelated_scores(rel, dt, 0.05)
    assert float(a[36:].abs().mean()) > 3 * float(a[:36].abs().mean())
    assert abs(float(r[36:].abs().mean()) / float(r[:36].abs().mean()) - 1) < 0.2
    cos = lambda s: float(F.cosine_similarity(fs3.T @ s, dt, dim=0))  # noqa: E731
    assert cos(a) > 0.95 > cos(r) + 0.1
    assert float(F.cosine_similarity(ss.decorrelated_scores(rel, dt, 1e5), r, dim=0)) > 0.9999
    assert abs(float(a.abs().max()) - float(r.abs().max())) < 1e-5  # on the scale of r (beta reads r)


def test_identity_damping_holds_back_costly_channels(debug_generator, stats):
    g = debug_generator
    rel = _relevance(g)
    dt = F.normalize(torch.randn(16, generator=torch.Generator().manual_seed(1)), dim=0)
    paper, _ = ss.delta_s(g, rel, stats, dt, 0.1)
    flat = torch.cat([paper[k] / stats.std[k] for k in rel.layers])
    costly = int(flat.abs().argmax())  # the paper's strongest channel
    cost = torch.zeros(rel.fs3.shape[0])
    cost[costly] = 0.09
    damped, _ = ss.delta_s(g, rel, stats, dt, 0.1, identity_cost=cost, identity_damping=0.01)
    flat2 = torch.cat([damped[k] / stats.std[k] for k in rel.layers])
    others = torch.arange(len(flat)) != costly
    ratio = flat2[others] / flat[others].where(flat[others] != 0, torch.ones(1))
    scale = float(ratio[flat[others] != 0].mean())  # the rest is scaled up by the new max only
    assert torch.allclose(ratio[flat[others] != 0], torch.full_like(ratio[flat[others] != 0], scale), atol=1e-5)
    assert float(flat2[costly] / flat[costly]) == pytest.approx(scale / 10, rel=1e-4)


def test_identity_cost_equals_the_direct_computation(debug_generator, stats, identity):
    """The prefix-sharing computation against full syntheses, channel by channel."""
    g = debug_generator
    cost = ic.compute_identity_cost(g, identity, stats, n_images=3, layers=[0, 3], image_batch=2, batch_size=7)
    assert cost.cost.shape == (g.layers[0].channels + g.layers[3].channels,) and bool((cost.cost >= 0).all())
    styles = ss.styles_from_w(g, ss.sample_w(g, 3))
    with torch.no_grad():
        e0 = identity.embed(g.synthesis_from_styles(styles))
        for k, c, row in ((0, 1, 1), (3, 5, g.layers[0].channels + 5)):
            drops = []
            for sign in (-1, 1):
                s = [x.clone() for x in styles]
                s[k][:, c] += sign * ic.PERTURBATION * stats.std[k][c]
                drops.append(1 - (identity.embed(g.synthesis_from_styles(s)) * e0).sum(-1))
            assert float(cost.cost[row]) == pytest.approx(float(torch.cat(drops).mean()), abs=1e-5)


def test_identity_cost_file_round_trip_and_bad_files(debug_generator, stats, identity, tmp_path):
    g = debug_generator
    cost = ic.compute_identity_cost(g, identity, stats, n_images=2, layers=[0])
    path = cost.save(tmp_path / "idcost.npy")
    back = ic.IdentityCost.load(path, g)
    assert torch.equal(back.cost, cost.cost) and back.layers == (0,) and back.meta["n_images"] == 2
    with pytest.raises(CheckpointError, match="computed for another generator"):
        back.rows_for(_relevance(g), g)
    assert torch.equal(back.rows_for(_relevance(g, (0,)), g), back.cost)
    np.save(tmp_path / "wrong.npy", np.ones(5, np.float32))
    (tmp_path / "wrong.npy.json").write_text('{"layers": [0]}')
    with pytest.raises(CheckpointError, match="not an identity cost of this generator"):
        ic.IdentityCost.load(tmp_path / "wrong.npy", g)
    (tmp_path / "cut.npy").write_bytes(path.read_bytes()[:60])
    (tmp_path / "cut.npy.json").write_text('{"layers": [0]}')
    with pytest.raises(StyleClipError) as e:
        ic.IdentityCost.load(tmp_path / "cut.npy", g)
    assert "\n" not in str(e.value)
    with pytest.raises(StyleClipError, match="no such identity cost file"):
        ic.IdentityCost.load(tmp_path / "missing.npy", g)


def test_global_editor_with_identity_damping(debug_generator, stats, identity, tmp_path, monkeypatch):
    """Without an identity net damping is refused with a clear message; with one, the cost is computed once
    for a small generator, cached, and found again."""
    from styleclip.editors.global_directions import GlobalDirectionsConfig, GlobalDirectionsEditor
    from styleclip.factory import create_editor, load_clip
    from styleclip.store.stylespace_files import identity_cost_cache_path
    from styleclip.types import Latent, Prompt

    monkeypatch.setenv("STYLECLIP_CACHE", str(tmp_path))
    g, clip = debug_generator, load_clip("debug")
    rel = _relevance(g, ss.relevance_layers(g), ss.clip_dim(clip))
    with pytest.raises(StyleClipError, match="needs the model set's identity net"):
        create_editor("global", g, clip, stats=stats, relevance=rel, identity_damping=0.01)
    config = dict(stats=stats, relevance=rel, identity_damping=0.01, ridge=0.2)
    ed = create_editor("global", g, clip, identity, **config)
    assert identity_cost_cache_path(g, identity).is_file()
    again = create_editor("global", g, clip, identity, **config)
    assert torch.equal(again.identity_cost.cost, ed.identity_cost.cost)
    # a relevance of fewer layers (an official fs3 prefix) takes the cost rows of its layers
    first = g.layers[0].channels
    part = GlobalDirectionsEditor(g, clip, identity, config=GlobalDirectionsConfig(
        stats=stats, relevance=ss.Relevance(rel.fs3[:first], (0,)), identity_damping=0.01,
        identity_cost=ed.identity_cost))
    assert torch.equal(part._identity_rows, ed.identity_cost.cost[:first])
    w = g.mapping_plus(torch.randn(2, g.config.style_dim, generator=torch.Generator().manual_seed(0)), 0.7)
    res = again.edit(Latent(w), Prompt("a smiling face", strength=3.0))
    assert torch.isfinite(res.image).all() and res.metrics["channels_kept"] > 0
