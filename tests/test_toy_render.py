import numpy as np

from styleclip.toy.render import ATTRIBUTE_VALUES, Attributes, caption, render, sample_attributes, sample_identity


def test_render_is_deterministic_and_attributes_change_pixels():
    rng = np.random.default_rng(0)
    idn = sample_identity(rng)
    base = Attributes()
    img = render(idn, base)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert np.array_equal(img, render(idn, base))
    for name, values in ATTRIBUTE_VALUES.items():
        for v in values:
            if v == getattr(base, name):
                continue
            other = render(idn, base.replace(**{name: v}))
            assert np.abs(other.astype(int) - img).sum() > 0, (name, v)


def test_identity_changes_pixels_and_captions_name_the_attributes():
    rng = np.random.default_rng(1)
    att = sample_attributes(rng)
    a, b = render(sample_identity(rng), att), render(sample_identity(rng), att)
    assert np.abs(a.astype(int) - b).mean() > 1
    att = Attributes(hair_style="mohawk", hair_colour="blue", glasses="sunglasses", beard=True)
    texts = [caption(att, np.random.default_rng(i)) for i in range(40)]
    assert all("mohawk" in t and "sunglasses" in t and "no " not in t for t in texts)
    coloured = sum("blue" in t for t in texts)
    assert 20 <= coloured < 40  # the colour is named in most captions, the style alone in some (as prompts)


def test_caption_colour_goes_before_hair_not_into_hairstyle():
    att = Attributes(hair_style="mohawk", hair_colour="black")
    texts = {caption(att, np.random.default_rng(i)) for i in range(40)}
    assert not any("mohawk black hairstyle" in t for t in texts)
    assert any("black" in t for t in texts)
