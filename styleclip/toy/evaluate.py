"""Scoring text edits of toy faces: did the edit reach the prompt's attributes, keep the others, keep the person?

`EDIT_PROMPTS` maps prompt groups to prompts (worded as the toy captions word them, so the toy CLIP reads
them) and each prompt to the attribute values it asks for. `score_edits` reads source and edit with the
evaluation classifier (never used in any loss) and compares identity embeddings; `summarize` turns the
per-sample scores into rates with their sample sizes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import torch

from styleclip.toy.render import ATTRIBUTE_VALUES

EDIT_PROMPTS: dict[str, dict[str, dict[str, object]]] = {
    "hair style": {
        "a face with a mohawk": {"hair_style": "mohawk"},
        "a face with an afro": {"hair_style": "afro"},
        "a bald face": {"hair_style": "bald"},
        "a face with long hair": {"hair_style": "long"},
    },
    "hair colour": {
        "a face with blond hair": {"hair_colour": "blond"},
        "a face with purple hair": {"hair_colour": "purple"},
    },
    "expression": {
        "a smiling face": {"expression": "smiling"},
        "a surprised face": {"expression": "surprised"},
    },
    "accessories": {
        "a face wearing glasses": {"glasses": "glasses"},
        "a face wearing sunglasses": {"glasses": "sunglasses"},
        "a face with a beard": {"beard": True},
    },
    "compound": {
        "a smiling face with a mohawk": {"expression": "smiling", "hair_style": "mohawk"},
        "a face with blond hair wearing glasses": {"hair_colour": "blond", "glasses": "glasses"},
    },
}

IDENTITY_EVAL = Path(__file__).resolve().parent.parent / "assets" / "toy_faces" / "identity_eval.json"


def all_prompts() -> dict[str, dict[str, object]]:
    """Every prompt of EDIT_PROMPTS (group order) -> its target."""
    return {p: t for group in EDIT_PROMPTS.values() for p, t in group.items()}


def prompt_group(prompt: str) -> str | None:
    return next((g for g, ps in EDIT_PROMPTS.items() if prompt in ps), None)


def identity_threshold(path: str | Path = IDENTITY_EVAL) -> float:
    """The toy identity net's verification threshold (cosine at or above it: same person)."""
    return float(json.loads(Path(path).read_text())["eval"]["threshold"])


def check_target(target: Mapping[str, object]) -> None:
    if not target:
        raise ValueError("an edit target needs at least one attribute")
    for a, v in target.items():
        if a not in ATTRIBUTE_VALUES:
            raise ValueError(f"unknown attribute {a!r}; known: {', '.join(ATTRIBUTE_VALUES)}")
        if v not in ATTRIBUTE_VALUES[a]:
            raise ValueError(f"{a} has no value {v!r}; values: {', '.join(map(str, ATTRIBUTE_VALUES[a]))}")


def _has(pred: Mapping[str, object], target: Mapping[str, object]) -> bool:
    """All target values read; a hair colour only counts on a head with hair."""
    for a, v in target.items():
        if pred[a] != v:
            return False
        if a == "hair_colour" and pred["hair_style"] == "bald":
            return False
    return True


def _unrelated_kept(src: Mapping[str, object], edit: Mapping[str, object], target: Mapping[str, object]
                    ) -> float:
    attrs = [a for a in ATTRIBUTE_VALUES if a not in target]
    if "bald" in (src["hair_style"], edit["hair_style"]):
        attrs = [a for a in attrs if a != "hair_colour"]  # invisible on a bald head
    if not attrs:
        return float("nan")
    return sum(src[a] == edit[a] for a in attrs) / len(attrs)


def _rows(pred: Mapping[str, Sequence]) -> list[dict]:
    n = len(next(iter(pred.values())))
    return [{a: pred[a][i] for a in pred} for i in range(n)]


@torch.no_grad()
def score_edits(classifier, identity, src_img: torch.Tensor, edit_img: torch.Tensor,
                target: Mapping[str, object], *, threshold: float | None = None) -> dict[str, list]:
    """Per-sample scores of edits src_img -> edit_img ([N,3,H,W] in [-1,1]) toward `target` (attribute ->
    value, as in EDIT_PROMPTS):

    success: every target value is read on the edit; already: the source had them all; unrelated_kept:
    fraction of the other attributes read the same on source and edit (hair colour left out when either is
    bald); identity_cosine / identity_kept (>= `threshold`, default the toy net's verification threshold),
    only when `identity` is given; source / edit: the attribute values read."""
    check_target(target)
    if src_img.shape != edit_img.shape:
        raise ValueError(f"source and edit differ in shape: {list(src_img.shape)} vs {list(edit_img.shape)}")
    src = _rows(classifier.predict(src_img))
    edit = _rows(classifier.predict(edit_img.to(src_img)))
    out: dict[str, list] = {
        "success": [_has(e, target) for e in edit],
        "already": [_has(s, target) for s in src],
        "unrelated_kept": [_unrelated_kept(s, e, target) for s, e in zip(src, edit)],
        "source": src,
        "edit": edit,
    }
    if identity is not None:
        t = identity_threshold() if threshold is None else threshold
        cos = (identity.embed(src_img) * identity.embed(edit_img.to(src_img))).sum(-1).tolist()
        out["identity_cosine"] = cos
        out["identity_kept"] = [c >= t for c in cos]
    return out


def _mean(xs) -> float:
    xs = [float(x) for x in xs if not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else float("nan")


def summarize(scores: Mapping[str, list]) -> dict[str, float | int]:
    """Rates over per-sample scores (one prompt, or several concatenated): success_rate among the sources
    that did not already have the target (n_success), and over all samples (n): already_rate,
    unrelated_kept, identity_cosine, identity_kept_rate, and good_rate (success and identity kept, among
    n_success) when identity scores are present."""
    n = len(scores["success"])
    todo = [i for i in range(n) if not scores["already"][i]]
    out: dict[str, float | int] = {
        "n": n, "n_success": len(todo),
        "success_rate": _mean(scores["success"][i] for i in todo),
        "already_rate": _mean(scores["already"]),
        "unrelated_kept": _mean(scores["unrelated_kept"]),
    }
    if "identity_cosine" in scores:
        out["identity_cosine"] = _mean(scores["identity_cosine"])
        out["identity_kept_rate"] = _mean(scores["identity_kept"])
        out["good_rate"] = _mean(scores["success"][i] and scores["identity_kept"][i] for i in todo)
    return out


def concat_scores(parts: Sequence[Mapping[str, list]]) -> dict[str, list]:
    """Per-sample scores of several calls joined (keys present in all parts)."""
    if not parts:
        return {}
    keys = [k for k in parts[0] if all(k in p for p in parts)]
    return {k: [x for p in parts for x in p[k]] for k in keys}


IDENTITY_IGNORES = "hair, glasses, beard, expression and background"
IDENTITY_COMPARES = "face shape, skin tone, eyes, nose and mouth"


def attributes_named(prompt: str) -> set[str]:
    """The attributes a free-text prompt names ('mohawk' -> hair_style; 'blond hair, glasses' -> hair_colour,
    glasses): those with a value word in the text (a word stem for 'smiling' / 'surprised')."""
    text = prompt.lower()
    named = set()
    for attr, values in ATTRIBUTE_VALUES.items():
        words = ["beard"] if attr == "beard" else [str(v) for v in values if v not in ("none", "neutral")]
        if any(w in text or (w.endswith("ing") and w[:-3] in text) or (w.endswith("ed") and w[:-1] in text)
               for w in words):
            named.add(attr)
    return named


@torch.no_grad()
def unrelated_changes(classifier, src_img: torch.Tensor, edit_img: torch.Tensor, prompt: str | None,
                      reference: torch.Tensor | None = None) -> list[tuple[int, int, list[str]]]:
    """Per edit: (unrelated attributes kept, unrelated attributes compared, 'attr: before -> after' for each
    unrelated one that changed), read by the evaluation classifier. Unrelated = not named by the prompt
    (`attributes_named`), or, for a reference image, those the classifier reads the same on the reference and
    the source; hair colour is left out when either image is bald."""
    named = attributes_named(prompt) if prompt else set()
    src = _rows(classifier.predict(src_img))
    edit = _rows(classifier.predict(edit_img.to(src_img)))
    ref = _rows(classifier.predict(reference.to(src_img)))[0] if reference is not None else None
    out = []
    for s, e in zip(src, edit):
        attrs = [a for a in ATTRIBUTE_VALUES if a not in named and (ref is None or ref[a] == s[a])]
        if "bald" in (s["hair_style"], e["hair_style"]):
            attrs = [a for a in attrs if a != "hair_colour"]
        changed = [f"{a.replace('_', ' ')} {_value(s[a])} -> {_value(e[a])}" for a in attrs if s[a] != e[a]]
        out.append((len(attrs) - len(changed), len(attrs), changed))
    return out


def _value(v) -> str:
    return ("yes" if v else "no") if isinstance(v, bool) else str(v)


@torch.no_grad()
def pick_sources(generator, classifier, target: Mapping[str, object], n: int = 12, *, psi: float = 0.7,
                 with_hair: bool = False, seed: int = 0, pool: int = 64) -> torch.Tensor:
    """W+ [n,num_ws,D] of the first of `pool` z (seeded) whose sample the classifier does not already read with
    the target (and, with `with_hair`, not bald): the sources of the per-engine tests and toy_edits benchmark."""
    z = torch.randn(pool, generator.config.style_dim, generator=torch.Generator().manual_seed(seed))
    w = generator.mapping_plus(z.to(generator.w_avg.device), truncation_psi=psi)
    read = classifier.predict(generator.synthesis(w))
    keep = [i for i in range(pool) if any(read[a][i] != v for a, v in target.items())
            and not (with_hair and read["hair_style"][i] == "bald")][:n]
    return w[keep]
