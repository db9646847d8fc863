"""Each engine edits toy faces toward the text, judged by the independent evaluation classifier: the target
attribute appears in most samples (>= 8 of 12) while the person (identity net) and the unrelated attributes stay."""
import pytest
import torch

from styleclip import factory
from styleclip.toy.evaluate import pick_sources, score_edits, summarize
from styleclip.toy.assets import load_toy_classifier
from styleclip.types import Latent, Prompt



@pytest.fixture(scope="module")
def toy():
    g = factory.load_generator("toy-faces")
    return g, factory.load_clip("toy-faces"), factory.load_identity("toy-faces"), load_toy_classifier()


def sources(g, classifier, target, n=6, psi=0.7, with_hair=False):
    """W+ of the first seeds whose sample does not already show the target (and has hair, if asked)."""
    return pick_sources(g, classifier, target, n, psi=psi, with_hair=with_hair)


def check(result, w, toy, target, *, success, kept, unrelated=0.6):
    g, _, identity, classifier = toy
    with torch.no_grad():
        src = g.synthesis(w)
    s = summarize(score_edits(classifier, identity, src, result.image, target))
    assert s["success_rate"] >= success, s
    assert s["identity_kept_rate"] >= kept, s
    assert s["unrelated_kept"] >= unrelated, s
    return s


def test_optimization_gives_glasses(toy):
    g, clip, identity, classifier = toy
    target = {"glasses": "glasses"}
    w = sources(g, classifier, target, n=12)
    editor = factory.create_editor("optimize", g, clip, identity, **factory.edit_defaults("toy-faces", "optimize"))
    result = editor.edit(Latent(w), Prompt("a face wearing glasses"))
    # the figures on these 12 sources: benchmarks/toy_edits.py -> docs/toy-faces.md
    check(result, w, toy, target, success=8 / 12, kept=0.75, unrelated=0.5)


def global_editor(toy, *, keep_identity=True, paper=False):
    """(editor, alpha) as `styleclip edit --engine global` builds it on toy-faces: an identity budget per face
    (--fixed-strength: keep_identity False) and the refined delta_s (paper: the paper's)."""
    g, clip, identity, _ = toy
    tuned = factory.edit_defaults("toy-faces", "global", keep_identity=keep_identity)
    options = dict(beta=tuned["beta"], compute_missing=False)
    if not paper:
        options.update(factory.global_direction_options("toy-faces", identity))
    if keep_identity:
        options.update(auto=True, auto_strength=factory.auto_strength_config("toy-faces", target="identity"))
    return factory.create_editor("global", g, clip, identity, **options), tuned["strength"]


def global_edit(toy, w, prompt, **kwargs):
    editor, alpha = global_editor(toy, **kwargs)
    return editor.edit(Latent(w), Prompt(prompt, neutral="a face", strength=alpha))


def test_global_direction_gives_a_mohawk(toy):
    """The CLI's global edit on toy-faces (identity budget, refined delta_s). Blond hair, once this test's prompt,
    is global's weak prompt since: the strongest edit that keeps the person also thins the hair (toy CLIP ties
    blond to bald), 0.50 in docs/benchmarks.md."""
    g, clip, identity, classifier = toy
    target = {"hair_style": "mohawk"}
    w = sources(g, classifier, target, n=12)
    # the figures on these 12 sources, and for glasses and blond hair: benchmarks/toy_edits.py -> docs/toy-faces.md
    check(global_edit(toy, w, "a face with a mohawk"), w, toy, target, success=8 / 12, kept=0.75, unrelated=0.75)


def test_global_smile_keeps_the_person(toy):
    """The paper's delta_s at a fixed alpha changes the person on most of these sources (a smile moves ~700
    channels, a few of which carry most of the identity change); the toy defaults (identity damping and the
    identity budget per face) keep the person on all and still smile."""
    g, clip, identity, classifier = toy
    target = {"expression": "smiling"}
    w = sources(g, classifier, target, n=12)
    ours = check(global_edit(toy, w, "a smiling face"), w, toy, target, success=8 / 12, kept=1.0, unrelated=0.75)
    paper = summarize(score_edits(classifier, identity, g.synthesis(w),
                                  global_edit(toy, w, "a smiling face", keep_identity=False, paper=True).image, target))
    assert paper["identity_kept_rate"] <= 0.5 and ours["good_rate"] >= paper["good_rate"] + 0.4, (ours, paper)


def test_global_compound_prompt_gets_both_parts(toy):
    """'a smiling face with a mohawk': the paper's channel scores r = fs3 . delta_t give the smile's many
    channels the whole direction (no mohawk on these sources); the decorrelated scores and identity damping
    (the toy defaults) give both on most of them."""
    g, clip, identity, classifier = toy
    target = {"expression": "smiling", "hair_style": "mohawk"}
    w = sources(g, classifier, target, n=12)
    refined = check(global_edit(toy, w, "a smiling face with a mohawk"), w, toy, target, success=8 / 12, kept=1.0,
                    unrelated=0.75)
    paper = summarize(score_edits(classifier, identity, g.synthesis(w),
                                  global_edit(toy, w, "a smiling face with a mohawk", paper=True).image, target))
    assert refined["good_rate"] >= paper["good_rate"] + 0.25, (refined, paper)


def test_global_direction_gives_glasses(toy):
    """The text direction 'a face' -> 'a face wearing glasses' of the toy CLIP fine-tuned with partial captions
    finds glasses (with the previous CLIP it ranked faces with glasses no better than chance: 0/12 here)."""
    g, clip, identity, classifier = toy
    target = {"glasses": "glasses"}
    w = sources(g, classifier, target, n=12)
    # benchmarks/toy_edits.py -> docs/toy-faces.md
    check(global_edit(toy, w, "a face wearing glasses"), w, toy, target, success=8 / 12, kept=0.75, unrelated=0.75)


def test_shipped_mapper_gives_a_mohawk(toy):
    g, clip, identity, classifier = toy
    target = {"hair_style": "mohawk"}
    w = sources(g, classifier, target, n=12)
    editor = factory.create_editor("mapper", g, clip, identity, mapper="a face with a mohawk")
    result = editor.edit(Latent(w), Prompt("a face with a mohawk"))
    # the figures of the three shipped mappers on these sources: benchmarks/toy_edits.py -> docs/toy-faces.md
    check(result, w, toy, target, success=8 / 12, kept=2 / 3, unrelated=0.5)


def test_universal_mapper_gives_a_mohawk(toy):
    """The shipped universal mapper never saw this (or any) prompt in training; it follows the prompt's
    image-side CLIP direction."""
    g, clip, identity, classifier = toy
    target = {"hair_style": "mohawk"}
    w = sources(g, classifier, target, n=12)
    editor = factory.create_editor("mapper", g, clip, identity, mapper="universal")
    result = editor.edit(Latent(w), Prompt("a face with a mohawk"))
    check(result, w, toy, target, success=8 / 12, kept=2 / 3, unrelated=0.5)


def test_universal_mapper_gives_glasses_with_its_change_floored(toy):
    """The mapper answers the glasses direction with a small change (W+ norm ~3.6, a mohawk's ~9); the CLI's
    floor on its size (toy-faces: 6) makes the glasses appear."""
    g, clip, identity, classifier = toy
    target = {"glasses": "glasses"}
    w = sources(g, classifier, target, n=12)
    defaults = factory.edit_defaults("toy-faces", "universal")
    result = factory.create_editor("mapper", g, clip, identity, mapper="universal", **defaults).edit(
        Latent(w), Prompt("a face wearing glasses"))
    s = check(result, w, toy, target, success=8 / 12, kept=0.75, unrelated=0.75)
    plain = factory.create_editor("mapper", g, clip, identity, mapper="universal",
                                  **{**defaults, "min_change": 0.0}).edit(Latent(w), Prompt("a face wearing glasses"))
    with torch.no_grad():
        src = g.synthesis(w)
    assert s["success_rate"] > summarize(score_edits(classifier, identity, src, plain.image, target))["success_rate"]


def test_disentangled_universal_mapper_keeps_what_the_prompt_does_not_name(toy):
    """The CLI's universal mapper on toy-faces (beta 0.1): the mapper's change kept only on channels relevant to
    the prompt's direction. The other channels, toRGB included, keep the source's styles exactly. (Pooled over
    the benchmark the unrelated attributes stay more often than with the whole W+ edit, 0.92 vs 0.88 in
    docs/benchmarks.md; on these 12 mohawk sources both keep them on about 9 in 10.)"""
    g, clip, identity, classifier = toy
    target = {"hair_style": "mohawk"}
    w = sources(g, classifier, target, n=12)
    editor = factory.create_editor("mapper", g, clip, identity, mapper="universal",
                                   **factory.edit_defaults("toy-faces", "universal"))
    result = editor.edit(Latent(w), Prompt("a face with a mohawk"))
    check(result, w, toy, target, success=8 / 12, kept=0.75, unrelated=0.75)
    with torch.no_grad():
        s_src = torch.cat([torch.cat(g.styles(w[i:i + 8]), 1) for i in range(0, len(w), 8)])  # its batches
    assert isinstance(result.latent, list) and len(result.latent) == len(g.layers)
    changed, col = 0, 0
    for layer, b in zip(g.layers, result.latent):
        a = s_src[:, col:col + layer.channels]
        col += layer.channels
        if layer.kind == "torgb":
            assert torch.equal(a, b)
        changed += int(((a - b).abs() > 0).any(0).sum())
    total = sum(layer.channels for layer in g.layers)
    assert 0 < changed < total / 2, (changed, total)  # a sparse change in S
    assert torch.allclose(g.synthesis_from_styles(result.latent), result.image, atol=1e-5)
