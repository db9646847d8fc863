"""The weight registry and downloader, against a local HTTP server (no test touches the internet)."""
from __future__ import annotations

import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

from styleclip.store import registry as pretrained
from styleclip.cli import app
from styleclip.errors import WeightsMissingError
from styleclip.store.registry import WeightSpec

PAYLOAD = bytes(range(256)) * 4000 + b"tail"  # ~1 MB, not a multiple of the chunk size
SHA = hashlib.sha256(PAYLOAD).hexdigest()
runner = CliRunner()


class Server:
    """Serves PAYLOAD at /file.bin (Range aware), can cut the first N responses after `cut_at` bytes,
    ignore Range, answer 404 at /missing, and imitate Google Drive's virus-scan warning at /drive."""

    def __init__(self):
        self.requests: list[tuple[str, str | None]] = []
        self.cut_at: int | None = None
        self.cuts_left = 0
        self.ignore_range = False
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                state.requests.append((self.path, self.headers.get("Range")))
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if url.path == "/file.bin" or (url.path == "/drive-download" and query.get("uuid") == ["u-42"]):
                    return self.send_payload()
                if url.path == "/drive":
                    return self.send_html(DRIVE_WARNING.format(port=state.port, id=query["id"][0]))
                if url.path == "/quota":
                    return self.send_html("<html><title>Google Drive - Quota exceeded</title>Too many users</html>")
                self.send_error(404)

            def send_html(self, text):
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def send_payload(self):
                start = 0
                rng = self.headers.get("Range")
                if rng and not state.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(PAYLOAD):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if state.cuts_left > 0:
                    state.cuts_left -= 1
                    self.wfile.write(body[:state.cut_at])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-file
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


DRIVE_WARNING = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan this file for
viruses.</p><p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={id}">file.bin</a>
(1M)</span> is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="http://127.0.0.1:{port}/drive-download" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-42"></form>
</div></div></body></html>"""


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def weight(monkeypatch, server, tmp_path):
    """A registry entry 'test-weight' served by the local server; downloads go to tmp_path/dl."""
    monkeypatch.delenv("STYLECLIP_OFFLINE", raising=False)
    monkeypatch.setenv("STYLECLIP_WEIGHTS_DIR", str(tmp_path / "dl"))

    def register(*paths, sha256=SHA, size=len(PAYLOAD)):
        spec = WeightSpec("test-weight", "test-weight.bin", "identity", urls=tuple(server.url(p) for p in paths),
                          size=size, sha256=sha256, licence="test")
        monkeypatch.setitem(pretrained.REGISTRY, "test-weight", spec)
        return spec

    return register


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- downloading --------------------------------------------------------------------------------------------
def test_download_verifies_and_renames(weight, server, tmp_path):
    weight("/file.bin")
    path = pretrained.download("test-weight", progress=False)
    assert path == tmp_path / "dl" / "test-weight.bin"
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name("test-weight.bin.partial").exists()
    assert server.requests == [("/file.bin", None)]
    assert pretrained.ensure("test-weight") == path  # now found without another request
    assert len(server.requests) == 1


def test_resume_after_cut_connection(weight, server):
    weight("/file.bin")
    server.cut_at, server.cuts_left = 300_000, 1
    path = pretrained.download("test-weight", progress=False)
    assert path.read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [None, "bytes=300000-"]  # the retry continued the partial


def test_resume_existing_partial(weight, server, tmp_path):
    weight("/file.bin")
    partial = tmp_path / "dl" / "test-weight.bin.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(PAYLOAD[:123_456])
    path = pretrained.download("test-weight", progress=False)
    assert path.read_bytes() == PAYLOAD and not partial.exists()
    assert server.requests == [("/file.bin", "bytes=123456-")]


def test_server_ignoring_range_restarts_cleanly(weight, server, tmp_path):
    weight("/file.bin")
    server.ignore_range = True
    partial = tmp_path / "dl" / "test-weight.bin.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"garbage" * 1000)
    assert pretrained.download("test-weight", progress=False).read_bytes() == PAYLOAD


def test_sha256_mismatch_leaves_nothing(weight, server, tmp_path):
    weight("/file.bin", sha256="0" * 64)
    with pytest.raises(WeightsMissingError, match="sha256 mismatch") as e:
        pretrained.download("test-weight", progress=False)
    assert "\n" not in str(e.value) and SHA in str(e.value)
    assert list((tmp_path / "dl").iterdir()) == []  # neither the file nor a partial


def test_size_mismatch_rejected(weight, server, tmp_path):
    weight("/file.bin", sha256=None, size=len(PAYLOAD) + 1)
    with pytest.raises(WeightsMissingError, match="expected"):
        pretrained.download("test-weight", progress=False)
    assert list((tmp_path / "dl").iterdir()) == []


def test_mirrors_tried_in_order(weight, server):
    weight("/missing", "/file.bin")
    path = pretrained.download("test-weight", progress=False)
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/missing", "/file.bin"]


def test_google_drive_warning_page(weight, server):
    weight("/drive?id=ABC&export=download&confirm=t")
    path = pretrained.download("test-weight", progress=False)
    assert path.read_bytes() == PAYLOAD
    second = urlparse(server.requests[1][0])
    assert second.path == "/drive-download"
    assert parse_qs(second.query) == {"id": ["ABC"], "export": ["download"], "confirm": ["t"], "uuid": ["u-42"]}


def test_drive_confirm_url_old_style_link():
    page = '<html><a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy_1&amp;id=ABC">Download</a>'
    url = pretrained.drive_confirm_url(page, "https://drive.google.com/uc?id=ABC&export=download")
    assert url == "https://drive.google.com/uc?export=download&confirm=Xy_1&id=ABC"
    assert pretrained.drive_confirm_url("<html><p>Quota exceeded</p></html>", "https://x/") is None


def test_web_page_instead_of_file(weight, server, tmp_path):
    weight("/quota")
    with pytest.raises(WeightsMissingError, match="web page instead of the file"):
        pretrained.download("test-weight", progress=False)
    assert not (tmp_path / "dl" / "test-weight.bin").exists()


def test_unreachable_gives_one_clear_message(weight, tmp_path, monkeypatch):
    port = closed_port()
    spec = WeightSpec("test-weight", "test-weight.bin", "identity",
                      urls=(f"http://127.0.0.1:{port}/a.bin", f"http://127.0.0.1:{port}/b.bin"))
    monkeypatch.setitem(pretrained.REGISTRY, "test-weight", spec)
    with pytest.raises(WeightsMissingError) as e:
        pretrained.ensure("test-weight", progress=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert "test-weight.bin" in msg and f"127.0.0.1:{port}/a.bin" in msg and f"127.0.0.1:{port}/b.bin" in msg
    assert "unreachable" in msg and str(tmp_path / "dl") in msg  # where it tried and where to put it
    assert not (tmp_path / "dl" / "test-weight.bin").exists()


def test_offline_mode_does_not_touch_the_network(weight, server, monkeypatch):
    weight("/file.bin")
    monkeypatch.setenv("STYLECLIP_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match="STYLECLIP_OFFLINE"):
        pretrained.ensure("test-weight")
    assert server.requests == []


# ---- resolution ---------------------------------------------------------------------------------------------
def test_resolution_order(tmp_path, monkeypatch):
    name = "arcface-ir-se50"
    local = tmp_path / "cwd" / "weights"
    wdir, cache = tmp_path / "wdir", Path(pretrained.cache_dir())
    for d in (local, wdir, cache):
        d.mkdir(parents=True, exist_ok=True)
        (d / "model_ir_se50.pth").write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("STYLECLIP_WEIGHTS_DIR", str(wdir))
    assert pretrained.resolve(name) == wdir / "model_ir_se50.pth"
    (wdir / "model_ir_se50.pth").unlink()
    assert pretrained.resolve(name) == cache / "model_ir_se50.pth"
    (cache / "model_ir_se50.pth").unlink()
    assert pretrained.resolve(name).resolve() == (local / "model_ir_se50.pth").resolve()
    (local / "model_ir_se50.pth").unlink()
    with pytest.raises(WeightsMissingError, match="model_ir_se50.pth"):
        pretrained.resolve(name)


def test_facenet_found_in_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "checkpoints").mkdir(parents=True)
    f = tmp_path / "torch" / "checkpoints" / "20180402-114759-vggface2.pt"
    f.write_bytes(b"x")
    assert pretrained.find("facenet-vggface2") == f


# ---- the registry itself --------------------------------------------------------------------------------------
def test_registry_entries_are_well_formed():
    reg = pretrained.REGISTRY
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in reg)
    assert len({s.filename for s in reg.values()}) == len(reg)
    for s in reg.values():
        assert s.urls and all(u.startswith(("https://", "http://")) for u in s.urls), s.name
        assert s.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", s.sha256), s.name
        assert s.licence, s.name
    # hashes pinned only where WEIGHTS.md gives them in full
    assert {n for n, s in reg.items() if s.sha256} == {
        "stylegan2-ffhq-1024", "arcface-ir-se50", "e4e-ffhq-encode", "clip-vit-b32-openai-jit"}
    assert reg["arcface-ir-se50"].size == 175_367_323 and len(reg["arcface-ir-se50"].urls) == 2
    mappers = {n: s.extra["no_fine_mapper"] for n, s in reg.items() if s.kind == "mapper"}
    assert len(mappers) == 14
    assert {n for n, nf in mappers.items() if nf} == {f"mapper-{n}" for n in (
        "afro", "angry", "bobcut", "bowlcut", "curly-hair", "mohawk", "surprised")}
    assert reg["mapper-curly-hair"].filename == "curly_hair.pt"
    ms = pretrained.MODEL_SETS["ffhq"]
    assert {ms.generator, ms.clip, ms.identity} <= set(reg)
    assert pretrained.expand_names(["ffhq"]) == ["stylegan2-ffhq-1024", "clip-vit-b32-openai", "arcface-ir-se50"]


def test_unknown_name_suggests():
    with pytest.raises(WeightsMissingError, match="did you mean arcface-ir-se50"):
        pretrained.get_spec("arcface-ir-se5")


# ---- CLI ----------------------------------------------------------------------------------------------------
def test_cli_list_path_verify(tmp_path, monkeypatch):
    wdir = tmp_path / "w"
    wdir.mkdir()
    monkeypatch.setenv("STYLECLIP_WEIGHTS_DIR", str(wdir))
    spec = WeightSpec("test-weight", "test-weight.bin", "identity", urls=("http://127.0.0.1:9/x",),
                      size=len(PAYLOAD), sha256=SHA, licence="test licence", non_commercial=True)
    monkeypatch.setitem(pretrained.REGISTRY, "test-weight", spec)

    r = runner.invoke(app, ["weights", "list"])
    assert r.exit_code == 0, r.output
    assert "stylegan2-ffhq-1024" in r.output and "mapper-afro" in r.output and "NC" in r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("test-weight "))
    assert line.rstrip().endswith("-")  # not present

    r = runner.invoke(app, ["weights", "path", "test-weight"])
    assert r.exit_code == 1 and "test-weight.bin" in r.output

    (wdir / "test-weight.bin").write_bytes(PAYLOAD)
    r = runner.invoke(app, ["weights", "path", "test-weight"])
    assert r.exit_code == 0 and r.output.strip() == str(wdir / "test-weight.bin")
    r = runner.invoke(app, ["weights", "list", "--kind", "identity"])
    assert str(wdir / "test-weight.bin") in r.output and "stylegan2" not in r.output
    r = runner.invoke(app, ["weights", "verify"])
    assert r.exit_code == 0 and "test-weight  ok" in r.output

    (wdir / "test-weight.bin").write_bytes(PAYLOAD[:-1] + b"X")
    r = runner.invoke(app, ["weights", "verify"])
    assert r.exit_code == 1 and "MISMATCH" in r.output


def test_cli_download(weight, server, tmp_path):
    weight("/file.bin")
    r = runner.invoke(app, ["weights", "download", "test-weight", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "dl" / "test-weight.bin").read_bytes() == PAYLOAD
    r = runner.invoke(app, ["weights", "download", "test-weight"])
    assert r.exit_code == 0 and "already present" in r.output and len(server.requests) == 1


@pytest.mark.parametrize("args", [["path", "nope"], ["download", "nope"], ["verify", "nope"],
                                  ["download", "arcface-ir-se50", "nope"]])
def test_cli_unknown_names_exit_1(args):
    r = runner.invoke(app, ["weights", *args])
    assert r.exit_code == 1
    assert "unknown weight name 'nope'" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
