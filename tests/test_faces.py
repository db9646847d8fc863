"""Face detection, FFHQ alignment geometry and safe photo loading."""
import math
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from styleclip.errors import InputError
from styleclip.photo.faces import (align_face, align_photo, detect_faces, ffhq_quad, load_image, select_face, source_to_crop)

skdata = pytest.importorskip("skimage.data")


def expected_eyes(landmarks, size):
    """Where the FFHQ recipe puts the eyes of a frontal face (eye_to_mouth perpendicular to eye_to_eye):
    the crop half-side is s = max(2 d, 1.8 h) (d: eye distance, h: eye-to-mouth distance); the centre lies
    0.1 h below the eye midpoint, so the eyes sit at x = S/2 -/+ S d / (4 s), y = S/2 (1 - 0.1 h / s)
    (continuous coordinates; minus 0.5 for pixel indices)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    d = np.hypot(*(lm[1] - lm[0]))
    h = np.hypot(*((lm[3] + lm[4]) / 2 - (lm[0] + lm[1]) / 2))
    s = max(2 * d, 1.8 * h)
    y = size / 2 * (1 - 0.1 * h / s) - 0.5
    return np.array([[size / 2 - size * d / (4 * s) - 0.5, y], [size / 2 + size * d / (4 * s) - 0.5, y]])


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(skdata.astronaut())


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    faces = detect_faces(astronaut)
    assert len(faces) == 1
    return faces[0]


def test_astronaut_one_face_five_landmarks(astronaut_face):
    f = astronaut_face
    assert f.landmarks.shape == (5, 2) and f.probability > 0.99
    x1, y1, x2, y2 = f.box
    assert (x1 <= f.landmarks[:, 0]).all() and (f.landmarks[:, 0] <= x2).all()
    assert (y1 <= f.landmarks[:, 1]).all() and (f.landmarks[:, 1] <= y2).all()
    left_eye, right_eye, nose, mouth_left, mouth_right = f.landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_astronaut_alignment_puts_eyes_level_at_ffhq_positions(astronaut, astronaut_face):
    size = 256
    aligned = align_face(astronaut, astronaut_face.landmarks, size=size)
    assert aligned.image.size == (size, size) and aligned.image.mode == "RGB"
    eyes = aligned.to_crop(astronaut_face.landmarks[:2])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1.0  # level (the photo's eyes differ by 2 px in height)
    np.testing.assert_allclose(eyes, expected_eyes(astronaut_face.landmarks, size), atol=0.02 * size)
    # the pixels agree: MTCNN on the aligned crop finds the landmarks where the transform says they went
    again = detect_faces(aligned.image)
    assert len(again) == 1
    np.testing.assert_allclose(again[0].landmarks, aligned.to_crop(astronaut_face.landmarks), atol=0.015 * size)
    assert abs(again[0].landmarks[0, 1] - again[0].landmarks[1, 1]) < 0.01 * size


def _blob_image(points, shape, sigma=3.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    img = np.zeros(shape)
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return Image.fromarray(np.uint8(np.clip(img * 255, 0, 255))).convert("RGB")


def _centroid(arr, x, y, r):
    x0, y0 = int(round(x)), int(round(y))
    win = arr[max(y0 - r, 0): y0 + r + 1, max(x0 - r, 0): x0 + r + 1].astype(np.float64)
    win = np.clip(win - 8, 0, None)  # ignore the faint floor
    yy, xx = np.mgrid[max(y0 - r, 0): y0 + r + 1, max(x0 - r, 0): x0 + r + 1]
    return np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])


@pytest.mark.parametrize("size,angle,centre", [
    (256, 25.0, (300.0, 300.0)),  # rotated face, no pre-shrink
    (64, -40.0, (300.0, 300.0)),  # pre-shrink by 3
    (128, 10.0, (470.0, 120.0)),  # quad leaves the photo: reflect padding
])
def test_alignment_pixels_follow_the_recipe(size, angle, centre):
    """Blobs drawn at known landmarks of a tilted synthetic face land where the recipe says, to a fraction
    of a pixel: eyes level at the FFHQ positions, mouth corners below them."""
    d, h = 120.0, 110.0
    t = math.radians(angle)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    local = np.array([[-d / 2, 0], [d / 2, 0], [0, h / 2], [-d / 2 * 0.8, h], [d / 2 * 0.8, h]])
    lm = local @ rot.T + centre
    pts = lm[[0, 1, 3, 4]]
    photo = _blob_image(pts, (600, 600), sigma=4.0)
    aligned = align_face(photo, lm, size=size)
    predicted = source_to_crop(pts, aligned.quad, size)
    eyes = expected_eyes(lm, size)
    np.testing.assert_allclose(predicted[:2], eyes, atol=1e-6)  # the mapping itself is the closed form
    arr = np.asarray(aligned.image)[..., 0]
    r = max(3, size // 16)
    found = np.stack([_centroid(arr, x, y, r) for x, y in predicted])
    np.testing.assert_allclose(found, predicted, atol=0.1)  # measured: <= 0.05 px
    assert abs(found[0, 1] - found[1, 1]) < 0.1
    assert (found[2:, 1] > found[:2, 1].max() + 0.2 * size).all()


def test_ffhq_quad_is_a_square_centred_below_the_eyes():
    lm = np.array([[100.0, 100], [160, 100], [130, 130], [110, 160], [150, 160]])
    q = ffhq_quad(lm)
    sides = [np.hypot(*(q[(i + 1) % 4] - q[i])) for i in range(4)]
    np.testing.assert_allclose(sides, sides[0])
    assert sides[0] == pytest.approx(2 * max(2 * 60, 1.8 * 60))
    np.testing.assert_allclose(q.mean(0), [130, 100 + 0.1 * 60])
    with pytest.raises(ValueError):
        ffhq_quad(np.zeros((3, 2)))


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_no_face_is_a_clear_error(tmp_path, name):
    path = tmp_path / f"{name}.png"
    Image.fromarray(getattr(skdata, name)()).save(path)
    assert detect_faces(load_image(path)) == []
    with pytest.raises(InputError, match="no face found"):
        align_photo(path, size=64)
    from styleclip.cli import app

    res = CliRunner().invoke(app, ["faces", str(path)])
    assert res.exit_code == 1 and "no face found" in res.output
    res = CliRunner().invoke(app, ["invert", str(path), "--model", "debug", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "no face found" in res.output


def test_faces_cli_lists_and_writes_crops(tmp_path, astronaut):
    from styleclip.cli import app

    path = tmp_path / "astronaut.jpg"
    astronaut.save(path, quality=95)
    res = CliRunner().invoke(app, ["faces", str(path), "--out", str(tmp_path / "crops"), "--size", "64"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("0  box=(") and "probability=1.000" in res.output
    crop = Image.open(tmp_path / "crops" / "face_0.png")
    assert crop.size == (64, 64)


def test_select_face_index(astronaut_face):
    assert select_face([astronaut_face]) is astronaut_face
    with pytest.raises(InputError, match="out of range"):
        select_face([astronaut_face], 1)


# ---- loading -----------------------------------------------------------------------------------------
def test_load_errors(tmp_path, astronaut):
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    with pytest.raises(InputError, match="not an image"):
        load_image(text)
    full = tmp_path / "full.jpg"
    astronaut.save(full, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated"):
        load_image(cut)
    assert load_image(full).size == (512, 512)


def _constant_png(path, width, height):
    """A 1-bit PNG of one colour, streamed (never materialised): a few kB on disk, gigapixels when decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row * 500) for _ in range(height // 500)) + comp.compress(row * (height % 500))
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bomb_png_is_refused(tmp_path):
    path = tmp_path / "huge.png"
    _constant_png(path, 20000, 20000)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(InputError, match="too large"):
        load_image(path)


def test_large_jpeg_is_read_downscaled(tmp_path, monkeypatch, astronaut):
    path = tmp_path / "big.jpg"
    astronaut.resize((3000, 2000)).save(path, quality=90)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # 6 Mpx is now a "bomb" (over twice the limit)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (750, 500)  # DCT-scaled by 1/4: the first scale under the limit
    png = tmp_path / "big.png"
    astronaut.resize((3000, 2000)).save(png)
    with pytest.raises(InputError, match="too large"):
        load_image(png)


def test_long_side_capped(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (5000, 1000), (10, 20, 30)).save(path)
    img = load_image(path, max_side=4096)
    assert img.size == (4096, 819) and img.getpixel((100, 100)) == (10, 20, 30)


def test_modes_and_exif(tmp_path):
    gray = tmp_path / "gray.png"
    Image.new("L", (40, 30), 77).save(gray)
    assert load_image(gray).getpixel((0, 0)) == (77, 77, 77)

    rgba = tmp_path / "rgba.png"
    im = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    im.putpixel((5, 5), (0, 0, 255, 255))
    im.save(rgba)
    out = load_image(rgba)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((5, 5)) == (0, 0, 255)

    deep = tmp_path / "deep.png"
    arr = np.full((30, 40), 65535, dtype=np.uint16)
    arr[0, 0] = 257 * 128
    Image.fromarray(arr).save(deep)  # a 16-bit grayscale PNG (read back as mode I;16 or I)
    assert Image.open(deep).mode in ("I;16", "I")
    out = load_image(deep)
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (128, 128, 128)

    rotated = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (60, 20), (200, 10, 10)).save(rotated, exif=exif)
    assert load_image(rotated).size == (20, 60)
