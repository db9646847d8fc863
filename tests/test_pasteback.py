"""Paste-back: the edited aligned face warped back into the whole photo through the inverse alignment."""
import numpy as np
import pytest
import torch
from PIL import Image

from styleclip.errors import InputError
from styleclip.photo.faces import align_face, ffhq_quad, source_to_crop
from styleclip.util.imaging import from_pil
from styleclip.photo.paste import (MaskConfig, crop_to_source, face_mask, mask_in_photo, masked_psnr, paste_back, paste_faces)
from styleclip.pipelines.photo import find_faces
from styleclip.toy.photos import FrameDetector, frame_landmarks, make_photo, render_frame
from styleclip.toy.render import Attributes, sample_identity


@pytest.fixture(scope="module")
def photo():
    """A non-square scene with one toy face, 130 px, turned 25 degrees."""
    rng = np.random.default_rng(3)
    face = (sample_identity(rng), Attributes(hair_style="mohawk", background="teal"), (170.0, 110.0), 130.0, 25.0)
    return make_photo([face], (320, 240), seed=1)


def test_frame_landmarks_cut_the_render_frame():
    frame = render_frame((100.0, 80.0), 120.0, 23.0)
    np.testing.assert_allclose(ffhq_quad(frame_landmarks(frame)), frame, atol=1e-9)


def test_crop_to_source_inverts_source_to_crop():
    quad = render_frame((50.0, 60.0), 80.0, -17.0)
    pts = np.random.default_rng(0).uniform(-5, 70, (20, 2))
    np.testing.assert_allclose(crop_to_source(source_to_crop(pts, quad, 64), quad, 64), pts, atol=1e-9)


def test_face_mask_is_feathered_and_zero_at_the_border():
    m = face_mask(64, MaskConfig(inset=0.05, feather=0.1))
    assert m.shape == (64, 64) and m.min() == 0 and m.max() == 1
    assert m[32, 32] == 1 and (m[:3] == 0).all() and (m[:, -3:] == 0).all()
    middle = m[32, 3:13]  # rises smoothly from the border
    assert (np.diff(middle) >= 0).all() and 0 < middle[5] < 1


def test_rotated_face_round_trips_exactly_outside_the_mask(photo):
    aligned = align_face(photo.image, frame_landmarks(photo.frames[0]), size=64)
    np.testing.assert_allclose(aligned.quad, photo.frames[0], atol=1e-9)
    out = paste_back(photo.image, from_pil(aligned.image)[0], aligned)
    assert out.size == photo.image.size == (320, 240)
    weight = mask_in_photo(out.size, aligned)
    a, b = np.asarray(out), np.asarray(photo.image)
    outside = weight == 0
    assert outside.mean() > 0.7 and (a[outside] == b[outside]).all()  # bit for bit
    # inside: only the resampling of align (130 px -> 64) and paste (64 -> 130) is lost
    assert masked_psnr(out, photo.image, aligned) > 28


def test_identity_edit_recovers_the_photo_to_the_reconstruction_error(photo):
    """alpha 0 through the real pipeline: toy generator, projector, global directions with strength 0."""
    from styleclip.factory import create_editor, load_clip, load_generator
    from styleclip.photo.invert import InversionConfig
    from styleclip.pipelines.photo import edit_photo
    from styleclip.types import Prompt

    g = load_generator("toy-faces")
    aligned = find_faces(photo.image, size=64, detector=FrameDetector(photo.frames))
    editor = create_editor("global", g, load_clip("toy-faces"), beta=0.3)
    result = edit_photo(photo.image, aligned, g, editor, Prompt("a face with blond hair", strength=0.0),
                        invert="projector", invert_options=dict(projector=InversionConfig(steps=20), use_cache=False))
    face = result.faces[0]
    torch.testing.assert_close(face.edited, face.inversion.reconstruction[0], atol=1e-5, rtol=0)  # alpha 0
    out, orig = np.asarray(result.edited_photo, np.float64), np.asarray(photo.image, np.float64)
    # the reconstruction warped back with a full-crop mask: the error the blend may not exceed
    full = MaskConfig(inset=0.0, feather=1e-6, corner=0.0)
    recon = np.asarray(paste_back(photo.image, face.inversion.reconstruction[0], aligned[0], mask=full), np.float64)
    weight = mask_in_photo(photo.image.size, aligned[0])
    assert (out[weight == 0] == orig[weight == 0]).all()
    assert (np.abs(out - orig) <= np.abs(recon - orig) + 1).all()  # +1: rounding
    assert masked_psnr(result.edited_photo, photo.image, aligned[0]) >= \
        masked_psnr(Image.fromarray(recon.astype(np.uint8)), photo.image, aligned[0])


def test_every_face_is_pasted_and_the_rest_is_untouched():
    rng = np.random.default_rng(5)
    faces = [(sample_identity(rng), Attributes(), (90.0, 100.0), 100.0, -10.0),
             (sample_identity(rng), Attributes(hair_style="afro"), (260.0, 120.0), 120.0, 15.0)]
    photo = make_photo(faces, (380, 220), seed=2)
    aligned = find_faces(photo.image, size=64, face="all", detector=FrameDetector(photo.frames))
    assert len(aligned) == 2
    grey = torch.zeros(3, 64, 64)  # mid grey everywhere: a visible edit
    out = np.asarray(paste_faces(photo.image, [(grey, a) for a in aligned]))
    orig = np.asarray(photo.image)
    for a in aligned:
        centre = np.rint(a.quad.mean(0)).astype(int)
        assert np.abs(out[centre[1], centre[0]].astype(int) - 128).max() <= 1
    assert (out[:, 180] == orig[:, 180]).all()  # between the faces


def test_bad_faces_are_one_line_errors(photo):
    with pytest.raises(InputError, match="no face"):
        find_faces(photo.image, size=64, detector=FrameDetector([]))
    with pytest.raises(InputError, match="out of range"):
        find_faces(photo.image, size=64, face=3, detector=FrameDetector(photo.frames))
    tiny = [render_frame((30.0, 30.0), 12.0, 0.0)]
    with pytest.raises(InputError, match="too small"):
        find_faces(photo.image, size=64, detector=FrameDetector(tiny))
