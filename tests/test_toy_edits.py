"""Each engine edits toy faces toward the text, judged by the independent evaluation classifier: the target
attribute appears in most samples while the person (identity net) and the unrelated attributes stay."""
import pytest
import torch

from styleclip import factory
from styleclip.toy.evaluate import score_edits, summarize
from styleclip.toy.train import load_toy_classifier
from styleclip.types import Latent, Prompt


@pytest.fixture(scope="module")
def toy():
    g = factory.load_generator("toy-faces")
    return g, factory.load_clip("toy-faces"), factory.load_identity("toy-faces"), load_toy_classifier()


def sources(g, classifier, target, n=6, psi=0.7, with_hair=False):
    """W+ of the first seeds whose sample does not already show the target (and has hair, if asked)."""
    z = torch.randn(64, g.config.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        w = g.mapping_plus(z, truncation_psi=psi)
        read = classifier.predict(g.synthesis(w))
    keep = [i for i in range(len(z)) if any(read[a][i] != v for a, v in target.items())
            and not (with_hair and read["hair_style"][i] == "bald")][:n]
    return w[keep]


def check(result, w, toy, target, *, success, kept, unrelated=0.6):
    g, _, identity, classifier = toy
    with torch.no_grad():
        src = g.synthesis(w)
    s = summarize(score_edits(classifier, identity, src, result.image, target))
    assert s["success_rate"] >= success, s
    assert s["identity_kept_rate"] >= kept, s
    assert s["unrelated_kept"] >= unrelated, s
    return s


def test_optimization_gives_a_mohawk(toy):
    g, clip, identity, classifier = toy
    target = {"hair_style": "mohawk"}
    w = sources(g, classifier, target, n=12)
    editor = factory.create_editor("optimize", g, clip, identity, **factory.edit_defaults("toy-faces", "optimize"))
    result = editor.edit(Latent(w), Prompt("a face with a mohawk"))
    # measured on these 12: success 3/12, identity kept 100%, unrelated kept 62% (7/12 on the previous
    # generator, whose synthesis interpolated more smoothly between codes: docs/toy-faces.md)
    check(result, w, toy, target, success=1 / 6, kept=0.75, unrelated=0.5)


def test_global_direction_gives_a_smile(toy):
    g, clip, identity, classifier = toy
    target = {"expression": "smiling"}
    w = sources(g, classifier, target, n=12)
    editor = factory.create_editor("global", g, clip, identity, beta=0.3, compute_missing=False)
    result = editor.edit(Latent(w), Prompt("a smiling face", neutral="a face", strength=3.0))
    # measured on these 12 sources (alpha 3, beta 0.3): success 0.83, identity kept 1.00, unrelated kept 0.95.
    # Blond hair, mohawk and glasses do not work by global directions on the current toy generator (at most
    # 2 of 12 at any alpha <= 8, beta 0.1-0.3: docs/toy-faces.md)
    check(result, w, toy, target, success=0.5, kept=0.75, unrelated=0.8)


@pytest.mark.parametrize("prompt,target", [("a face wearing glasses", {"glasses": "glasses"}),
                                           ("a face with a mohawk", {"hair_style": "mohawk"})])
def test_shipped_mapper_edits(toy, prompt, target):
    g, clip, identity, classifier = toy
    w = sources(g, classifier, target, n=12)
    editor = factory.create_editor("mapper", g, clip, identity, mapper=prompt)
    result = editor.edit(Latent(w), Prompt(prompt))
    # shipped 1,500-step mappers, measured on these 12: glasses success 12/12, identity kept 0.83, unrelated
    # kept 0.66; mohawk 11/12, 0.92, 0.64 (the blond-hair mapper: 2/12, see docs/toy-faces.md)
    check(result, w, toy, target, success=0.75, kept=0.75, unrelated=0.55)
