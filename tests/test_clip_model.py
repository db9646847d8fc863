"""ClipEncoder: the box-filter resize against the official upsample-x7 + avg-pool path (values and memory),
normalisation, gradients, template averaging, the text cache and prompt validation. Tiny random CLIPs only."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from styleclip.encoders.clip import (DEBUG_CLIP_CONFIG, OPENAI_MEAN, OPENAI_STD, ClipEncoder, box_resize_matrix, imagenet_templates, official_resize)
from styleclip.factory import load_clip

ROOT = Path(__file__).resolve().parents[1]
# the debug CLIP with a 224 px input: exercises the real 1024/256 -> 224 resize at a tiny cost
DEBUG_224 = {**DEBUG_CLIP_CONFIG, "vision_cfg": {**DEBUG_CLIP_CONFIG["vision_cfg"], "image_size": 224,
                                                  "patch_size": 32}}


@pytest.fixture(scope="module")
def clip():
    return load_clip("debug")


@pytest.fixture(scope="module")
def clip224():
    return ClipEncoder.from_config(DEBUG_224, seed=0, name="debug224", official_input=True)


@pytest.mark.parametrize("size", [1024, 256])
def test_resize_equals_official_path(clip224, size):
    img = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1
    ours = clip224.preprocess(img)  # official_input=True: resize only
    ref = official_resize(img, 224)
    assert ours.shape == ref.shape == (2, 3, 224, 224)
    assert (ours - ref).abs().max() < 1e-5
    if size == 1024:  # the official filter is fractional (32/7 px): plain area resampling is a different filter
        assert (F.interpolate(img, size=(224, 224), mode="area") - ref).abs().max() > 1e-2


@pytest.mark.parametrize("size", [1024, 256])
def test_debug_clip_resize_equals_official_path(clip, size):
    img = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    enc = ClipEncoder(clip.model, clip.tokenizer, official_input=True)
    assert enc.input_size == 32
    assert (enc.preprocess(img) - official_resize(img, 32)).abs().max() < 1e-5


def test_box_resize_matrix_rows():
    for n in (1024, 256, 100):
        m = box_resize_matrix(n, 224, dtype=torch.float64)
        assert m.shape == (224, n)
        assert torch.allclose(m.sum(1), torch.ones(224, dtype=torch.float64), atol=1e-12)
    m = box_resize_matrix(1024, 224, dtype=torch.float64)  # row 0 covers [0, 32/7): 4 full pixels + 4/7 of one
    assert torch.allclose(m[0, :5], torch.tensor([7, 7, 7, 7, 4], dtype=torch.float64) / 32)


_MEM_PROBE = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[3])
from styleclip.encoders.clip import ClipEncoder, official_resize
torch.set_num_threads(1)
model = torch.nn.Module()  # the resize needs only the input size: no CLIP model is built in the probe
model.visual = torch.nn.Module()
model.visual.image_size = 224
enc = ClipEncoder(model, None, official_input=True)
size = int(sys.argv[2])
run = (lambda x: official_resize(x, 224)) if sys.argv[1] == "official" else enc.preprocess
run(torch.rand(1, 3, 64, 64))  # warm up the kernels of both paths at a tiny size
img = torch.rand(1, 3, size, size)
def status_mb(field):  # VmHWM: this address space's peak RSS (ru_maxrss would carry the parent's over exec)
    line = next(ln for ln in open("/proc/self/status") if ln.startswith(field + ":"))
    return int(line.split()[1]) / 1024
current = status_mb("VmRSS")
out = run(img)
peak = status_mb("VmHWM")
print(json.dumps({"peak_increase_mb": peak - current, "shape": list(out.shape)}))
"""


def _peak_increase_mb(mode: str, size: int) -> float:
    r = subprocess.run([sys.executable, "-c", _MEM_PROBE, mode, str(size), str(ROOT)], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1, 3, 224, 224]
    return result["peak_increase_mb"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_resize_memory_is_a_fraction_of_the_official_path():
    """Peak RSS growth of one 1024 px image through each path, each in a fresh process. The official path
    materialises the 7x upsampled image: 3 * 7168^2 floats = 616 MB; ours holds [3, 224, 1024] (2.75 MB)."""
    official = _peak_increase_mb("official", 1024)
    ours = _peak_increase_mb("ours", 1024)
    assert official > 500, official
    assert ours < 50 and ours < official / 10, (ours, official)


def test_normalisation_and_official_input(clip):
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    resized = official_resize(img, 32)
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    assert torch.allclose(clip.preprocess(img), ((resized + 1) / 2 - mean) / std, atol=1e-5)
    official = ClipEncoder(clip.model, clip.tokenizer, official_input=True)
    assert torch.allclose(official.preprocess(img), resized, atol=1e-6)  # raw [-1, 1] values, as upstream
    assert not torch.allclose(official.encode_image(img), clip.encode_image(img), atol=1e-3)
    same = torch.rand(1, 3, 32, 32) * 2 - 1  # at the CLIP input size no resize happens
    assert torch.allclose(official.preprocess(same), same)


def test_gradients_reach_the_image_only(clip):
    img = (torch.rand(2, 3, 48, 48) * 2 - 1).requires_grad_(True)
    text = clip.encode_text(["a smiling face"])
    emb = clip.encode_image(img)
    assert emb.shape == (2, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    (1 - emb @ text.t()).sum().backward()
    assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in clip.parameters())


def test_template_averaging_formula(clip):
    templates = ["a photo of {}.", "a drawing of {}.", "{} in the dark."]
    got = clip.encode_text(["a cat", "a dog"], templates)
    for row, text in zip(got, ["a cat", "a dog"]):
        with torch.no_grad():
            per = clip.model.encode_text(clip.tokenizer([t.format(text) for t in templates]))
        expected = F.normalize(F.normalize(per, dim=-1).mean(0), dim=0)  # embed, normalise, average, normalise
        assert torch.allclose(row, expected, atol=1e-5)
    plain = clip.encode_text("a cat")
    with torch.no_grad():
        assert torch.allclose(plain[0], F.normalize(clip.model.encode_text(clip.tokenizer(["a cat"]))[0], dim=0),
                              atol=1e-5)
    assert not torch.allclose(plain[0], got[0], atol=1e-3)


def test_imagenet_templates():
    t = imagenet_templates()
    assert len(t) == 79 and "a photo of many {}." not in t and all("{}" in x for x in t)
    assert t[0] == "a bad photo of a {}."


def test_text_cache(monkeypatch):
    enc = load_clip("debug")
    calls = []
    original = enc._encode_tokens

    def counting(tokens, *a, **k):
        calls.append(tokens.shape[0])
        return original(tokens, *a, **k)

    monkeypatch.setattr(enc, "_encode_tokens", counting)
    a = enc.encode_text(["red hair", "a beard"])
    assert calls == [2]
    b = enc.encode_text(["a beard", "red hair"])
    assert calls == [2] and torch.equal(b, a.flip(0))  # all cached
    enc.encode_text(["red hair", "a hat"])
    assert calls == [2, 1]  # only the new prompt is embedded
    enc.encode_text(["red hair"], ["a photo of {}.", "art of {}."])
    assert calls == [2, 1, 2]  # templates are part of the cache key
    enc.encode_text(["red hair"], ["a photo of {}.", "art of {}."])
    assert calls == [2, 1, 2]


@pytest.mark.parametrize("texts", ["", "   ", [""], ["ok", " "], []])
def test_empty_prompt_raises(clip, texts):
    with pytest.raises(ValueError, match="prompt"):
        clip.encode_text(texts)
    with pytest.raises(ValueError, match="prompt"):
        clip.encode_text(texts, imagenet_templates())  # templating must not hide an empty prompt


def test_bad_templates_raise(clip):
    with pytest.raises(ValueError, match="templates"):
        clip.encode_text("a cat", ["no placeholder"])
    with pytest.raises(ValueError, match="templates"):
        clip.encode_text("a cat", [])


def test_truncated_text_forward_equals_open_clip():
    from styleclip.factory import load_clip

    clip = load_clip("debug")
    tokens = clip.tokenizer(["a face", "a photo of a face with a mohawk and blue hair"])
    ours = clip._encode_tokens(tokens)
    theirs = clip.model.encode_text(tokens)
    assert torch.allclose(ours, theirs, atol=1e-5)
