"""The web app in a real browser: start `python -m styleclip.app.demo --model debug` on a free local port, drive
it with Playwright + Debian's chromium (type a prompt, move a slider, click Edit, see the result), screenshot.

Skipped (with the reason) only where no browser can be had: no `playwright` package, or no chromium
(`apt-get install chromium`; or set STYLECLIP_CHROMIUM to a chromium/chrome binary)."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    for cand in (os.environ.get("STYLECLIP_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and Path(cand).is_file():
            return cand
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium binary (apt-get install chromium, or set STYLECLIP_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        except Exception as e:  # a broken browser install: nothing to test the page with
            pytest.skip(f"chromium at {exe} does not start: {' '.join(str(e).split())[:200]}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app as users start it, in a subprocess; yields its URL."""
    port = _free_port()
    cache = tmp_path_factory.mktemp("app-cache")
    log = tmp_path_factory.mktemp("app-log") / "server.log"
    env = dict(os.environ, STYLECLIP_CACHE=str(cache), STYLECLIP_OFFLINE="1", OMP_NUM_THREADS="1",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(ROOT))
    env.pop("STYLECLIP_WEIGHTS_DIR", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "styleclip.app.demo", "--model", "debug", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not answer on {url} within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _image_src(page, elem_id: str) -> str | None:
    img = page.locator(f"#{elem_id} img")
    return img.first.get_attribute("src") if img.count() else None


def test_edit_in_the_browser(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1360, "height": 1500})
    page.set_default_timeout(30_000)
    page.goto(server)
    # the first face arrives through the page's load event
    page.locator("#source img").first.wait_for(state="visible")
    assert "127.0.0.1" in server

    # type a prompt
    page.locator("#target textarea, #target input").first.fill("a smiling face")

    # move the alpha slider by dragging its handle to the right end
    alpha_number = page.locator("#alpha input[type=number]").first
    before_value = float(alpha_number.input_value())
    rng = page.locator("#alpha input[type=range]").first
    box = rng.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_function("() => parseFloat(document.querySelector('#alpha input[type=number]').value) > 8")
    moved_value = float(alpha_number.input_value())
    assert moved_value > before_value

    # click Edit: before/after images and the summary appear. The first global edit on a fresh cache computes the
    # debug model's quick statistics and relevance (seconds alone, more on a busy shared machine): a longer wait
    page.locator("#global-edit").click()
    page.set_default_timeout(120_000)
    page.locator("#after img").first.wait_for(state="visible")
    page.wait_for_function(
        "() => { const i = document.querySelector('#after img'); return i && i.complete && i.naturalWidth > 0; }")
    after = page.locator("#after img").first
    assert after.evaluate("i => i.naturalWidth") >= 256  # the 32-px debug image is enlarged for viewing
    info = page.locator("#result-info")
    info.get_by_text("channels").first.wait_for()
    page.set_default_timeout(30_000)
    assert "a smiling face" in info.inner_text() and f"α = {moved_value:g}" in info.inner_text()
    assert _image_src(page, "before") and _image_src(page, "after") != _image_src(page, "before")

    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "app.png")
    # the downloads are links to the edited image and latent
    for elem_id, suffix in (("image-file", ".png"), ("latent-file", "_latent.pt")):
        link = page.locator(f"#{elem_id} a[download$='{suffix}']").first
        link.wait_for()
        response = page.request.get(link.get_attribute("href"))
        assert response.ok and len(response.body()) > 100

    # a new source clears the previous result (it belonged to the old face)
    page.locator("#seed input").first.fill("5")
    page.locator("#show-seed").click()
    page.wait_for_function("() => !document.querySelector('#after img')")
    assert not page.locator("#result-info").inner_text().strip()

    # bad input: an empty prompt shows an error message instead of an edit
    page.locator("#target textarea, #target input").first.fill("")
    page.locator("#global-edit").click()
    page.get_by_text("the target text is empty").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "app_error.png"))
    page.close()


def test_photo_upload_in_the_browser(server, browser, tmp_path):
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skdata.astronaut()).save(photo, quality=92)
    page = browser.new_page(viewport={"width": 1360, "height": 1300})
    page.set_default_timeout(30_000)
    page.goto(server)
    page.locator("#source img").first.wait_for(state="visible")
    first_src = _image_src(page, "source")
    page.get_by_role("tab", name="Upload photo").click()
    page.locator("#photo input[type=file]").set_input_files(str(photo))
    page.locator("#invert").click()
    page.get_by_text("astronaut.jpg").last.wait_for()
    page.get_by_text("aligned and inverted").first.wait_for()
    assert _image_src(page, "source") != first_src
    page.screenshot(path=str(ARTIFACTS / "app_photo.png"))
    page.close()
