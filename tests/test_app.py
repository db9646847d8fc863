"""The web app's callbacks without a browser (debug models), and the same flows through gradio_client
against the app served on a local port."""
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from styleclip.errors import InputError, StyleClipError
from styleclip.types import Latent, Prompt

pytest.importorskip("gradio")
from styleclip.app.actions import SWEEP_FRAMES, VIEW_SIZE, GlobalEdit, StyleClipApp  # noqa: E402




@pytest.fixture(scope="module")
def mapper_dir(tmp_path_factory):
    from styleclip.store.mappers import save_mapper
    from styleclip.nets.mapper import LevelsMapper

    folder = tmp_path_factory.mktemp("mappers")
    torch.manual_seed(0)
    save_mapper(LevelsMapper(8, 64), folder / "mohawk" / "best.safetensors", info={"prompt": "mohawk"})
    return folder


@pytest.fixture(scope="module")
def app(mapper_dir, tmp_path_factory):
    torch.set_num_threads(1)
    return StyleClipApp("debug", device="cpu", mapper_folders=[mapper_dir], out_dir=tmp_path_factory.mktemp("out"))


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _pixels(img: torch.Tensor) -> np.ndarray:
    from styleclip.util.imaging import to_uint8

    return to_uint8(img[0])


def test_faces_from_seeds(app):
    a, b, c = app.face_from_seed(7), app.face_from_seed(7), app.face_from_seed(8)
    assert torch.equal(a.session.w_plus, b.session.w_plus) and not torch.equal(a.session.w_plus, c.session.w_plus)
    assert a.session.w_plus.shape == (1, app.generator.num_ws, app.generator.config.style_dim)
    assert a.session.source.size == (32, 32) and a.image.size == (VIEW_SIZE, VIEW_SIZE)  # enlarged for viewing
    assert np.array_equal(np.asarray(a.image.resize((32, 32), Image.NEAREST)), np.asarray(a.session.source))
    seed, out = app.new_face()
    assert out.session.label == f"seed{seed}"
    assert torch.equal(out.session.w_plus, app.face_from_seed(seed).session.w_plus)
    for bad in ("abc", -1, None):
        with pytest.raises(InputError, match="seed"):
            app.face_from_seed(bad)


def test_global_edit_is_the_engine_s_edit(app):
    src = app.face_from_seed(3).session
    out = app.global_edit(src, "a face", "a smiling face", 4.0, 0.15)
    engine = app.global_editor()
    ref = engine.edit(Latent(src.w_plus), Prompt("a smiling face", neutral="a face", strength=4.0))
    assert np.array_equal(_png(out.image_file), _pixels(ref.image))
    saved = torch.load(out.latent_file, weights_only=True)  # S space, as the CLI writes it (--latent reads it)
    assert saved["space"] == "S"
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(saved["styles"], ref.latent))
    assert out.metrics["channels"] == [ref.metrics["channels_kept"]] and out.metrics["channels"][0] > 0
    assert "a smiling face" in out.info and f"{out.metrics['channels'][0]} of" in out.info
    assert out.after.size == out.before.size == (VIEW_SIZE, VIEW_SIZE)
    # alpha 0 reproduces the source exactly
    zero = app.global_edit(src, "a face", "a smiling face", 0.0, 0.15)
    assert np.array_equal(_png(zero.image_file), np.asarray(src.source))


def test_slider_changes_cost_one_synthesis(app, monkeypatch):
    """After the first edit, alpha changes reuse the cached direction and source styles: one synthesis, no
    new delta_s, no W+ -> S."""
    out = app.global_edit(app.face_from_seed(4).session, "a face", "a face with glasses", 2.0, 0.12)
    calls = {"synthesis": 0, "delta_s": 0, "styles": 0}
    g = app.generator

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(g, "synthesis_from_styles", count("synthesis", g.synthesis_from_styles))
    monkeypatch.setattr(g, "synthesis", count("synthesis", g.synthesis))
    monkeypatch.setattr(g, "styles", count("styles", g.styles))
    from styleclip.editors import global_directions as engine  # where the engine looks delta_s up

    monkeypatch.setattr(engine, "delta_s", count("delta_s", engine.delta_s))
    session = out.session
    for alpha in (3.0, -1.5, 6.0):
        out = app.global_edit(session, "a face", "a face with glasses", alpha, 0.12)
        session = out.session
    assert calls == {"synthesis": 3, "delta_s": 0, "styles": 0}
    app.global_edit(session, "a face", "a face with glasses", 6.0, 0.2)  # new beta: one new direction
    assert calls["delta_s"] == 1


def test_stacked_edits_add_up(app):
    src = app.face_from_seed(5).session
    text, stacked = app.stack_edit(src, "a face", "a smiling face", 3.0, 0.15)
    assert stacked.stack == (GlobalEdit("a face", "a smiling face", 3.0, 0.15),) and "a smiling face" in text
    assert src.stack == ()  # sessions are never mutated
    out = app.global_edit(stacked, "", "a face with glasses", 2.0, 0.15)  # empty neutral: "a face"
    ref = app.global_editor().edit_many(Latent(src.w_plus), [Prompt("a smiling face", strength=3.0),
                                                            Prompt("a face with glasses", strength=2.0)])
    assert np.array_equal(_png(out.image_file), _pixels(ref.image))
    assert len(out.metrics["channels"]) == 2 and "2 edits combined" in out.info
    text, cleared = app.clear_stack(out.session)
    assert cleared.stack == () and "No stacked edits" in text


def test_alpha_sweep_gif(app):
    src = app.face_from_seed(6).session
    path = app.alpha_sweep(src, "a face", "a smiling face", 5.0, 0.15)
    gif = Image.open(path)
    assert gif.n_frames == 2 * SWEEP_FRAMES - 2 and gif.size == (VIEW_SIZE, VIEW_SIZE)
    gif.seek(SWEEP_FRAMES // 2)  # the middle frame is alpha 0: the source
    source = np.asarray(src.source).astype(int)
    middle = np.abs(np.asarray(gif.convert("RGB").resize((32, 32), Image.NEAREST)).astype(int) - source).mean()
    gif.seek(0)  # alpha -5
    first = np.abs(np.asarray(gif.convert("RGB").resize((32, 32), Image.NEAREST)).astype(int) - source).mean()
    assert middle < 4 and first > 3 * middle  # up to the GIF's 256-colour palette


def test_mapper_edit(app):
    assert app.mapper_choices() == ["mohawk (trained)"]
    src = app.face_from_seed(2).session
    out = app.mapper_edit(src, "mohawk (trained)", 2.0)
    editor = app._mapper("mohawk (trained)")
    expected = src.w_plus + editor.config.residual_scale * 2.0 * editor.mapper(src.w_plus)
    assert torch.allclose(torch.load(out.latent_file, weights_only=True), expected, atol=1e-6)
    assert "mohawk" in out.info and "CLIP similarity" in out.info
    with pytest.raises(InputError, match="no mapper chosen"):
        app.mapper_edit(src, None, 1.0)
    with pytest.raises(InputError, match="unknown mapper"):
        app.mapper_edit(src, "afro (official)", 1.0)


def test_optimization_reports_progress_and_frames(app):
    src = app.face_from_seed(1).session
    seen = []
    out = app.optimize(src, "a person with purple hair", 16, 0.1, 0.008, 0.005,
                       report=lambda done, total, message: seen.append((done, total, message)))
    assert [d for d, _, _ in seen] == list(range(1, 17)) and all(t == 16 for _, t, _ in seen)
    assert "clip" in seen[-1][2]  # the losses are shown with the bar
    assert len(out.frames) == 16 // 2 + 1 and out.frames[0].size == (VIEW_SIZE, VIEW_SIZE)
    w = torch.load(out.latent_file, weights_only=True)
    assert w.shape == src.w_plus.shape and not torch.equal(w, src.w_plus)
    assert out.metrics["clip_after"] > out.metrics["clip_before"]
    assert "identity similarity" in out.info  # the debug identity net is loaded
    with torch.no_grad():
        img = app.generator.synthesis(w)
    assert np.array_equal(_png(out.image_file), _pixels(img))


def test_bad_input_is_a_clear_error(app, tmp_path):
    src = app.face_from_seed(0).session
    with pytest.raises(InputError, match="prompt is empty"):
        app.optimize(src, "   ", 5)
    with pytest.raises(InputError, match="target text is empty"):
        app.global_edit(src, "a face", "", 4, 0.15)
    with pytest.raises(InputError, match="beta too high"):
        app.global_edit(src, "a face", "a smiling face", 4, 0.99)
    with pytest.raises(InputError, match="steps"):
        app.optimize(src, "a smile", 0)
    with pytest.raises(InputError, match="no photo"):
        app.upload_photo(None)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(StyleClipError, match="notes.txt"):
        app.upload_photo(text, steps=5)


def test_upload_photo_aligns_and_inverts(app, tmp_path):
    skdata = pytest.importorskip("skimage.data")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    seen = []
    out = app.upload_photo(photo, steps=12, invert="projector", report=lambda d, t, m: seen.append((d, t, m)))
    s = out.session
    assert s.label == "astronaut" and s.w_plus.shape == (1, app.generator.num_ws, app.generator.config.style_dim)
    assert s.aligned.size == (32, 32) and out.aligned.size == (VIEW_SIZE, VIEW_SIZE)
    assert seen[0][2] == "finding the face" and seen[-1][:2] == (12, 12) and "projector" in seen[-1][2]
    assert "projector: PSNR" in out.info and out.photo.size == (512, 512) and s.generator is None
    with torch.no_grad():
        recon = app.generator.synthesis(s.w_plus)
    assert np.array_equal(np.asarray(s.source), _pixels(recon))
    edit = app.global_edit(s, "a face", "a smiling face", 3, 0.15)  # edits start from the inverted photo
    assert edit.image_file.name.startswith("astronaut_")
    assert edit.photo.size == (512, 512) and Image.open(edit.photo_file).size == (512, 512)  # pasted back
    assert app.photo_view(edit.session) == (s.photo, edit.photo, str(edit.photo_file))
    assert app.photo_view(app.face_from_seed(1).session) == (None, None, None)
    coffee = tmp_path / "coffee.png"
    Image.fromarray(skdata.coffee()).save(coffee)
    with pytest.raises(InputError, match="no face found"):
        app.upload_photo(coffee, steps=5)
    assert app.preview_photo(photo).size == (512, 512) and app.preview_photo(None) is None
    assert app.preview_photo(tmp_path / "missing.png") is None


def test_old_result_files_are_pruned(app, monkeypatch):
    import styleclip.app.actions

    monkeypatch.setattr(styleclip.app.actions, "KEEP_RESULTS", 3)
    src = app.face_from_seed(9).session
    outs = [app.global_edit(src, "a face", "a smiling face", a, 0.15) for a in (1.0, 2.0, 3.0, 4.0)]
    assert len([p for p in app.out_dir.iterdir() if p.is_dir()]) == 3
    assert not outs[0].image_file.exists() and outs[-1].image_file.exists()


def test_no_session_starts_from_seed_zero(app):
    a = app.global_edit(None, "a face", "a smiling face", 2, 0.15)
    b = app.global_edit(app.face_from_seed(0).session, "a face", "a smiling face", 2, 0.15)
    assert np.array_equal(_png(a.image_file), _png(b.image_file))


# ---- the web layer ---------------------------------------------------------------------------------------
ENDPOINTS = {"/new_face", "/face_from_seed", "/upload_photo", "/global_edit", "/stack_edit", "/clear_stack",
             "/alpha_sweep", "/refresh_mappers", "/mapper_edit", "/optimize", "/any_prompt_edit"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(app):
    from styleclip.app.demo import build_demo

    demo = build_demo(app)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


def test_gradio_client_flows(served, tmp_path):
    from gradio_client import Client

    demo, url = served
    assert demo.local_url.startswith("http://127.0.0.1:")  # bound to the loopback interface
    client = Client(url, verbose=False)
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ENDPOINTS
    source, info, stack = client.predict(11, 0.7, api_name="/face_from_seed")
    assert "seed 11" in info and Image.open(source).size == (VIEW_SIZE, VIEW_SIZE)

    before, after, info, image_file, latent_file = client.predict("a face", "a smiling face", 4.0, 0.15,
                                                                  api_name="/global_edit")
    assert "channels" in info and Image.open(image_file).size == (32, 32)
    styles = torch.load(latent_file, weights_only=True)["styles"]
    assert [s.shape[1] for s in styles] == [layer.channels for layer in demo_app(demo).generator.layers]
    assert not np.array_equal(_png(before), _png(after))

    assert "a smiling face" in client.predict("a face", "a smiling face", 4.0, 0.15, api_name="/stack_edit")
    info = client.predict("a face", "a face with glasses", 2.0, 0.15, api_name="/global_edit")[2]
    assert "2 edits combined" in info  # the stack lives in this client's session
    assert "No stacked" in client.predict(api_name="/clear_stack")

    gif = client.predict("a face", "a smiling face", 4.0, 0.15, api_name="/alpha_sweep")
    assert Image.open(gif).n_frames == 2 * SWEEP_FRAMES - 2

    out = client.predict("a person with purple hair", 6, 0.1, 0.008, 0.0, api_name="/optimize")
    assert "6 steps" in out[2] and len(out[5]) == 6 + 1  # a frame every step (steps // 8 < 1), and the last

    choices = client.predict(api_name="/refresh_mappers")
    assert "mohawk" in str(choices)
    assert "mohawk" in client.predict("mohawk (trained)", 1.5, api_name="/mapper_edit")[2]
    assert "mohawk" in client.predict("mohawk", 1.0, api_name="/mapper_edit")[2]  # a bare name, as the CLI takes

    with pytest.raises(Exception, match="target text is empty"):
        client.predict("a face", " ", 4.0, 0.15, api_name="/global_edit")
    from gradio_client import handle_file

    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    with pytest.raises(Exception, match="Invalid file type"):
        client.predict(handle_file(str(notes)), 10, api_name="/upload_photo")
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"not a jpeg")
    with pytest.raises(Exception, match="fake.jpg"):
        client.predict(handle_file(str(fake)), 10, api_name="/upload_photo")
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict("", 5, 0.1, 0.008, 0.0, api_name="/optimize")


def demo_app(demo):
    """The StyleClipApp behind a demo (its callbacks close over it)."""
    for fn in demo.fns.values():
        for cell in (fn.fn.__closure__ or ()):
            if isinstance(cell.cell_contents, StyleClipApp):
                return cell.cell_contents
    raise AssertionError("no StyleClipApp found")


def test_cli_serve_passes_options(monkeypatch):
    from typer.testing import CliRunner

    import styleclip.app.demo
    from styleclip.cli import app as cli

    seen = {}
    monkeypatch.setattr(styleclip.app.demo, "serve", lambda model, **kw: seen.update(model=model, **kw))
    res = CliRunner().invoke(cli, ["serve", "--model", "debug", "--port", "7999"])
    assert res.exit_code == 0, res.output
    assert seen["model"] == "debug" and seen["host"] == "127.0.0.1" and seen["port"] == 7999 and not seen["share"]


def test_import_styleclip_stays_light():
    import subprocess
    import sys

    code = "import sys, styleclip; print('gradio' in sys.modules, 'typer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_photo_with_pivotal_tuning_edits_with_the_tuned_generator(app, tmp_path):
    skdata = pytest.importorskip("skimage.data")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    out = app.upload_photo(photo, steps=5, invert="pti", pti_steps=5)
    s = out.session
    assert s.generator is not None and s.generator is not app.generator and "pti: PSNR" in out.info
    assert [t["method"] for t in s.fidelity["tried"]] == ["projector", "pti"]
    with torch.no_grad():
        recon = s.generator.synthesis(s.w_plus)
    assert np.array_equal(np.asarray(s.source), _pixels(recon))  # the source is the tuned reconstruction
    edit = app.global_edit(s, "a face", "a smiling face", 0, 0.15)  # alpha 0: the reconstruction, pasted back
    assert np.array_equal(_png(edit.image_file), _pixels(recon))
    a, b = np.asarray(Image.open(edit.photo_file)), np.asarray(Image.open(photo))
    assert a.shape == b.shape and (a[-40:] == b[-40:]).all() and (a != b).any()
