"""Procedural cartoon faces ("toy faces"): the small world the embedded offline model is trained on.

A face = identity factors (who it is: face shape, skin tone, eyes, nose, mouth width) + editable attributes
(hair style and colour, expression, glasses, beard, background). Rendering is numpy/PIL, anti-aliased by
drawing at `supersample` x the size and downsampling with a box filter. Every render comes with its labels,
and captions are generated from the labels with varied wording.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

HAIR_STYLES = ("bald", "short", "long", "bob cut", "mohawk", "afro")
HAIR_COLOURS = {
    "black": (28, 24, 22), "brown": (110, 70, 35), "blond": (238, 206, 105), "red": (190, 55, 30),
    "grey": (165, 165, 165), "purple": (135, 55, 175), "blue": (45, 90, 215),
}
EXPRESSIONS = ("neutral", "smiling", "surprised")
GLASSES = ("none", "glasses", "sunglasses")
BACKGROUNDS = {
    "white": (240, 240, 240), "yellow": (245, 225, 120), "green": (140, 200, 140), "pink": (240, 170, 200),
    "teal": (90, 180, 180), "orange": (245, 160, 80),
}
SKIN_TONES = ((255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 90), (141, 85, 54), (95, 60, 40))
EYE_COLOURS = {"brown": (90, 55, 30), "blue": (60, 120, 210), "green": (60, 150, 80), "grey": (120, 125, 130)}

ATTRIBUTE_VALUES = {
    "hair_style": HAIR_STYLES,
    "hair_colour": tuple(HAIR_COLOURS),
    "expression": EXPRESSIONS,
    "glasses": GLASSES,
    "beard": (False, True),
    "background": tuple(BACKGROUNDS),
}


@dataclass(frozen=True)
class Identity:
    """Who the face is: unchanged by edits."""

    face_width: float  # half-width of the face ellipse (fraction of the image)
    face_height: float
    skin: int  # index into SKIN_TONES
    eye_colour: str
    eye_spacing: float  # half-distance between eye centres
    eye_size: float
    nose_length: float
    nose_width: float
    mouth_width: float


@dataclass(frozen=True)
class Attributes:
    """What a text prompt edits."""

    hair_style: str = "short"
    hair_colour: str = "brown"
    expression: str = "neutral"
    glasses: str = "none"
    beard: bool = False
    background: str = "white"

    def replace(self, **changes) -> "Attributes":
        return dataclasses.replace(self, **changes)


def sample_identity(rng: np.random.Generator) -> Identity:
    return Identity(
        face_width=float(rng.uniform(0.22, 0.29)), face_height=float(rng.uniform(0.28, 0.34)),
        skin=int(rng.integers(len(SKIN_TONES))), eye_colour=str(rng.choice(list(EYE_COLOURS))),
        eye_spacing=float(rng.uniform(0.085, 0.12)), eye_size=float(rng.uniform(0.035, 0.05)),
        nose_length=float(rng.uniform(0.05, 0.09)), nose_width=float(rng.uniform(0.025, 0.045)),
        mouth_width=float(rng.uniform(0.07, 0.11)),
    )


def sample_attributes(rng: np.random.Generator) -> Attributes:
    return Attributes(
        hair_style=str(rng.choice(HAIR_STYLES)), hair_colour=str(rng.choice(list(HAIR_COLOURS))),
        expression=str(rng.choice(EXPRESSIONS)), glasses=str(rng.choice(GLASSES)), beard=bool(rng.random() < 0.3),
        background=str(rng.choice(list(BACKGROUNDS))),
    )


def render(identity: Identity, attributes: Attributes, size: int = 64, supersample: int = 4) -> np.ndarray:
    """One face as uint8 [size, size, 3]."""
    s = size * supersample
    img = Image.new("RGB", (s, s), BACKGROUNDS[attributes.background])
    d = ImageDraw.Draw(img)

    def box(cx, cy, rx, ry):
        return [(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s]

    idn, att = identity, attributes
    cx, cy = 0.5, 0.54
    fw, fh = idn.face_width, idn.face_height
    skin = SKIN_TONES[idn.skin]
    hair = HAIR_COLOURS[att.hair_colour]
    top = cy - fh

    # hair behind the head
    if att.hair_style == "long":
        d.rectangle(box(cx, cy + 0.1, fw + 0.06, fh + 0.02), fill=hair)
        d.ellipse(box(cx, top + 0.1, fw + 0.06, 0.14), fill=hair)
    elif att.hair_style == "bob cut":
        d.ellipse(box(cx, cy - 0.06, fw + 0.07, fh - 0.02), fill=hair)
    elif att.hair_style == "afro":
        d.ellipse(box(cx, cy - 0.1, fw + 0.15, fh + 0.06), fill=hair)
        # curls: darker dots around the outline
        dark = tuple(int(c * 0.7) for c in hair)
        for k in range(16):
            a = 2 * np.pi * k / 16
            px, py = cx + (fw + 0.13) * np.cos(a), cy - 0.1 + (fh + 0.04) * np.sin(a)
            d.ellipse(box(px, py, 0.02, 0.02), fill=dark)

    # neck and face
    d.rectangle(box(cx, cy + fh, fw * 0.45, 0.08), fill=tuple(int(c * 0.9) for c in skin))
    d.ellipse(box(cx, cy, fw, fh), fill=skin)
    # ears
    for side in (-1, 1):
        d.ellipse(box(cx + side * fw, cy, 0.03, 0.05), fill=skin)

    # beard: covers the jaw below the mouth line
    if att.beard:
        d.chord(box(cx, cy + 0.02, fw, fh), 10, 170, fill=hair)
        d.ellipse(box(cx, cy + 0.15, idn.mouth_width + 0.02, 0.045), fill=skin)

    # eyes and eyebrows
    ey = cy - 0.04
    raise_brow = 0.03 if att.expression == "surprised" else 0.0
    for side in (-1, 1):
        ex = cx + side * idn.eye_spacing
        r = idn.eye_size * (1.25 if att.expression == "surprised" else 1.0)
        d.ellipse(box(ex, ey, r, r * 0.8), fill=(255, 255, 255))
        d.ellipse(box(ex, ey, r * 0.55, r * 0.55), fill=EYE_COLOURS[idn.eye_colour])
        d.ellipse(box(ex, ey, r * 0.25, r * 0.25), fill=(10, 10, 10))
        by = ey - idn.eye_size - 0.025 - raise_brow
        brow = HAIR_COLOURS[att.hair_colour] if att.hair_style != "bald" else (70, 50, 40)
        d.line([((ex - 0.04) * s, by * s), ((ex + 0.04) * s, (by - (0.01 if side < 0 else -0.01) * 0) * s)],
               fill=brow, width=max(1, int(0.018 * s)))

    # nose
    ny = cy + 0.02
    nose = tuple(int(c * 0.8) for c in skin)
    d.polygon([(cx * s, (ny - idn.nose_length) * s), ((cx - idn.nose_width) * s, (ny + 0.015) * s),
               ((cx + idn.nose_width) * s, (ny + 0.015) * s)], fill=nose)

    # mouth: big and dark enough to be seen at 64 px
    my, mw = cy + 0.13, idn.mouth_width
    if att.expression == "smiling":
        d.chord(box(cx, my - 0.03, mw, 0.06), 0, 180, fill=(120, 20, 30))
        d.chord(box(cx, my - 0.03, mw * 0.85, 0.035), 0, 180, fill=(255, 255, 255))
    elif att.expression == "surprised":
        d.ellipse(box(cx, my + 0.005, mw * 0.45, 0.05), fill=(60, 10, 15))
    else:
        d.rectangle(box(cx, my, mw * 0.8, 0.011), fill=(120, 30, 40))

    # glasses
    if att.glasses != "none":
        frame = (20, 20, 20)
        width = max(1, int(0.014 * s))
        for side in (-1, 1):
            ex = cx + side * idn.eye_spacing
            if att.glasses == "sunglasses":
                d.rounded_rectangle(box(ex, ey, 0.06, 0.045), radius=0.015 * s, fill=(15, 15, 20))
            else:
                d.ellipse(box(ex, ey, 0.06, 0.05), outline=frame, width=width)
        d.line([((cx - idn.eye_spacing + 0.06) * s, ey * s), ((cx + idn.eye_spacing - 0.06) * s, ey * s)],
               fill=frame, width=width)

    # hair on top of the head
    if att.hair_style in ("short", "long", "bob cut"):
        d.chord(box(cx, top + 0.09, fw + 0.015, 0.12), 180, 360, fill=hair)
        if att.hair_style == "bob cut":  # straight fringe
            d.rectangle([(cx - fw) * s, (top + 0.02) * s, (cx + fw) * s, (top + 0.1) * s], fill=hair)
    elif att.hair_style == "mohawk":
        d.polygon([((cx - 0.045) * s, (top + 0.06) * s), ((cx - 0.03) * s, (top - 0.16) * s),
                   ((cx + 0.03) * s, (top - 0.16) * s), ((cx + 0.045) * s, (top + 0.06) * s)], fill=hair)
    elif att.hair_style == "afro":
        d.chord(box(cx, top + 0.06, fw + 0.03, 0.1), 180, 360, fill=hair)

    if supersample > 1:
        img = img.resize((size, size), Image.BOX)
    return np.asarray(img, dtype=np.uint8)


_STYLE_WORDS = {
    "bald": ["bald", "with a shaved head", "with no hair"],
    "short": ["with short hair", "with a short haircut"],
    "long": ["with long hair", "with long flowing hair"],
    "bob cut": ["with a bob cut", "with a bob haircut"],
    "mohawk": ["with a mohawk", "with a mohawk hairstyle"],
    "afro": ["with an afro", "with curly afro hair"],
}
_EXPR_WORDS = {"neutral": ["neutral", "serious"], "smiling": ["smiling", "happy"], "surprised": ["surprised", "shocked"]}


def caption(attributes: Attributes, rng: np.random.Generator) -> str:
    """A caption of the attributes with varied wording and order (never negated: 'no glasses' is left out)."""
    att = attributes
    parts = []
    if att.hair_style == "bald":
        parts.append(str(rng.choice(_STYLE_WORDS["bald"])))
    else:
        style = str(rng.choice(_STYLE_WORDS[att.hair_style]))
        if rng.random() < 0.2:  # the style alone, as prompts say it ("a face with an afro")
            parts.append(style)
        elif "hair" in style and rng.random() < 0.5:  # (the draw order is part of the seeded data streams)
            parts.append(re.sub(r"\bhair\b", f"{att.hair_colour} hair", style, count=1)
                         if re.search(r"\bhair\b", style) else f"{style}, {att.hair_colour} hair")
        else:
            parts.append(f"{style} in {att.hair_colour}" if rng.random() < 0.3 else f"{style}, {att.hair_colour} hair")
    if att.glasses != "none":
        parts.append(f"wearing {att.glasses}" if rng.random() < 0.5 else f"with {att.glasses}")
    if att.beard:
        parts.append(str(rng.choice(["with a beard", "bearded"])))
    order = rng.permutation(len(parts))
    expr = str(rng.choice(_EXPR_WORDS[att.expression]))
    head = str(rng.choice(["a", "a cartoon of a", "a drawing of a"]))
    text = f"{head} {expr} face " + " ".join(parts[i] for i in order)
    if rng.random() < 0.5:
        text += f" on a {att.background} background"
    return " ".join(text.split())


def partial_caption(attributes: Attributes, rng: np.random.Generator, p_name: float = 0.4) -> tuple[str, dict]:
    """A caption that names a random subset of the attributes, as people write prompts ("a face with a mohawk",
    "a bald face", "a face"), and the attributes it names {name: value}. Absent glasses or beard are never
    named (captions do not negate), so a caption without them says nothing about them."""
    att = attributes
    named = {a: getattr(att, a) for a in ATTRIBUTE_VALUES if rng.random() < p_name}
    if att.glasses == "none":
        named.pop("glasses", None)
    if not att.beard:
        named.pop("beard", None)
    if att.hair_style == "bald" and "hair_colour" in named:  # no hair colour to see: name the baldness instead
        named.pop("hair_colour")
        named["hair_style"] = "bald"
    expr = str(rng.choice(_EXPR_WORDS[named["expression"]])) if "expression" in named else ""
    parts, adjective = [], ""
    style = named.get("hair_style")
    if style == "bald":
        if rng.random() < 0.5:
            adjective = "bald"
        else:
            parts.append(str(rng.choice(_STYLE_WORDS["bald"])))
    elif style is not None:
        words = str(rng.choice(_STYLE_WORDS[style]))
        if "hair_colour" in named:
            words = f"{words}, {att.hair_colour} hair" if rng.random() < 0.5 else f"{words} in {att.hair_colour}"
        parts.append(words)
    elif "hair_colour" in named:
        parts.append(f"with {att.hair_colour} hair")
    if "glasses" in named:
        parts.append(f"wearing {att.glasses}" if rng.random() < 0.5 else f"with {att.glasses}")
    if "beard" in named:
        parts.append(str(rng.choice(["with a beard", "bearded"])))
    order = rng.permutation(len(parts))
    head = str(rng.choice(["a", "a cartoon of a", "a drawing of a"]))
    text = f"{head} {expr} {adjective} face " + " ".join(parts[i] for i in order)
    if "background" in named:
        text += f" on a {att.background} background"
    return " ".join(text.split()), named


def caption_names(attributes: Attributes, text: str) -> dict:
    """What a full `caption` names: every attribute (absent glasses/beard by omission, hair colour unless bald),
    the background when the text mentions it."""
    named = {a: getattr(attributes, a) for a in ATTRIBUTE_VALUES if a != "background"}
    if attributes.hair_style == "bald":
        named.pop("hair_colour")
    if text.endswith(" background"):
        named["background"] = attributes.background
    return named
