"""styleclip.toy.evaluate: the edit scores on hand-made cases (known attributes), with a scripted classifier
for the bookkeeping and with the shipped toy classifier / identity net on real renders."""
import math

import numpy as np
import pytest
import torch

from styleclip.toy import evaluate as E
from styleclip.toy.data import to_tensor
from styleclip.toy.render import ATTRIBUTE_VALUES, Attributes, render, sample_identity


class ScriptedClassifier:
    """predict() returns, in call order, the attribute rows it was given."""

    def __init__(self, *calls):
        self.calls = list(calls)

    def predict(self, img):
        rows = self.calls.pop(0)
        assert len(rows) == img.shape[0]
        return {a: [getattr(r, a) for r in rows] for a in ATTRIBUTE_VALUES}


class ScriptedIdentity:
    """embed() gives unit vectors at chosen angles: cosine(src_i, edit_i) = cos[i]."""

    def __init__(self, cos):
        self.cos = torch.tensor(cos)
        self.k = 0

    def embed(self, img):
        self.k += 1
        if self.k == 1:
            return torch.tensor([[1.0, 0.0]]).expand(len(self.cos), 2)
        return torch.stack([self.cos, (1 - self.cos ** 2).sqrt()], 1)


def _img(n):
    return torch.zeros(n, 3, 8, 8)


def test_every_prompt_targets_known_values_and_groups_are_complete():
    assert set(E.EDIT_PROMPTS) == {"hair style", "hair colour", "expression", "accessories", "compound"}
    for prompt, target in E.all_prompts().items():
        E.check_target(target)
        assert E.prompt_group(prompt) is not None
    assert all(len(t) >= 2 for t in E.EDIT_PROMPTS["compound"].values())
    assert E.all_prompts()["a face with a mohawk"] == {"hair_style": "mohawk"}


def test_bookkeeping_success_already_unrelated_identity():
    base = Attributes("short", "brown", "neutral", "none", False, "white")
    src = [base, base, base.replace(hair_style="mohawk"), base]
    edit = [base.replace(hair_style="mohawk"),  # clean success
            base.replace(hair_style="mohawk", background="pink", glasses="glasses"),  # success, 2 of 5 changed
            base.replace(hair_style="mohawk"),  # already had it
            base.replace(hair_style="afro")]  # failure
    s = E.score_edits(ScriptedClassifier(src, edit), ScriptedIdentity([0.99, 0.5, 0.9, 0.83]), _img(4), _img(4),
                      {"hair_style": "mohawk"}, threshold=0.825)
    assert s["success"] == [True, True, True, False]
    assert s["already"] == [False, False, True, False]
    assert s["unrelated_kept"] == [1.0, 3 / 5, 1.0, 1.0]
    assert s["identity_cosine"] == pytest.approx([0.99, 0.5, 0.9, 0.83], abs=1e-6)
    assert s["identity_kept"] == [True, False, True, True]
    summ = E.summarize(s)
    assert summ["n"] == 4 and summ["n_success"] == 3
    assert summ["success_rate"] == pytest.approx(2 / 3)
    assert summ["already_rate"] == pytest.approx(1 / 4)
    assert summ["unrelated_kept"] == pytest.approx((1 + 0.6 + 1 + 1) / 4)
    assert summ["identity_kept_rate"] == pytest.approx(3 / 4)
    assert summ["good_rate"] == pytest.approx(1 / 3)  # only the first: success and identity kept, not already


def test_hair_colour_needs_hair_and_is_ignored_on_bald_heads():
    base = Attributes("short", "brown", "neutral", "none", False, "white")
    bald_blond = base.replace(hair_style="bald", hair_colour="blond")
    src = [base, bald_blond, base]
    edit = [bald_blond, base.replace(hair_colour="blond"), base.replace(hair_style="bald", hair_colour="red")]
    s = E.score_edits(ScriptedClassifier(src, edit), None, _img(3), _img(3), {"hair_colour": "blond"})
    assert s["success"] == [False, True, False]  # a bald head shows no blond hair
    assert s["already"] == [False, False, False]
    # sample 0: hair style changed (1 of 5 others); 1: bald -> short is a change; hair colour never counted
    assert s["unrelated_kept"] == [4 / 5, 4 / 5, 4 / 5]
    assert "identity_cosine" not in s and "good_rate" not in E.summarize(s)
    # toward bald: hair colour leaves the comparison, the other 4 attributes are kept
    s2 = E.score_edits(ScriptedClassifier([base], [base.replace(hair_style="bald", hair_colour="grey")]), None,
                       _img(1), _img(1), {"hair_style": "bald"})
    assert s2["success"] == [True] and s2["unrelated_kept"] == [1.0]


def test_compound_needs_every_value():
    base = Attributes("short", "brown", "neutral", "none", False, "white")
    target = E.all_prompts()["a smiling face with a mohawk"]
    edit = [base.replace(expression="smiling"), base.replace(expression="smiling", hair_style="mohawk")]
    s = E.score_edits(ScriptedClassifier([base, base], edit), None, _img(2), _img(2), target)
    assert s["success"] == [False, True]
    assert s["unrelated_kept"] == [1.0, 1.0]


def test_bad_targets_and_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="unknown attribute"):
        E.check_target({"hat": "fedora"})
    with pytest.raises(ValueError, match="no value"):
        E.check_target({"hair_style": "dreadlocks"})
    with pytest.raises(ValueError, match="differ in shape"):
        E.score_edits(ScriptedClassifier(), None, _img(2), _img(3), {"beard": True})


def test_summarize_empty_success_pool_is_nan():
    s = {"success": [True], "already": [True], "unrelated_kept": [1.0]}
    out = E.summarize(s)
    assert out["n_success"] == 0 and math.isnan(out["success_rate"])
    joined = E.concat_scores([s, {"success": [False], "already": [False], "unrelated_kept": [0.5]}])
    assert E.summarize(joined)["success_rate"] == 0.0 and joined["unrelated_kept"] == [1.0, 0.5]


def test_real_renders_with_the_shipped_classifier_and_identity_net():
    from styleclip.toy.assets import load_toy_classifier, load_toy_identity

    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    alice, bob = sample_identity(rng), sample_identity(rng)
    base = Attributes("short", "brown", "neutral", "none", False, "white")
    src = to_tensor([render(alice, base), render(alice, base), render(alice, base)])
    edit = to_tensor([render(alice, base.replace(hair_style="mohawk")),  # same person, mohawk
                      render(alice, base.replace(hair_style="mohawk", background="green")),
                      render(bob, base)])  # someone else, no mohawk
    s = E.score_edits(load_toy_classifier(), load_toy_identity(), src, edit, {"hair_style": "mohawk"})
    assert s["success"] == [True, True, False]
    assert s["already"] == [False, False, False]
    assert s["unrelated_kept"][0] == 1.0 and s["unrelated_kept"][1] == pytest.approx(4 / 5)
    assert s["identity_kept"][:2] == [True, True] and s["identity_kept"][2] is False
    assert 0.5 < E.identity_threshold() < 1.0
