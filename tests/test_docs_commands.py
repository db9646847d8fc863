"""Every `styleclip ...` command written in README.md and docs/*.md runs offline and exits 0.

Commands come from fenced code blocks (lines starting with `styleclip` or `python -m styleclip`, `\\`
continuations joined, `# comments` dropped) and from inline code spans that start with `styleclip `. A span
that is only a command name (`styleclip edit` in a sentence) is a mention: `--help` is run instead, which
still fails when the command does not exist. Commands run in document order, one shared working folder per
run (so `--relevance fs3.npy` finds the file an earlier command wrote), with STYLECLIP_OFFLINE=1: with no
--model they fall back to toy-faces as a user offline sees; `--model ffhq` is run as `--model toy-faces`.

Not every command is run exactly as written (the tables below, each with its reason):
- OVERRIDES: commands that are hours long as written (training) run with a step count of a few steps;
- NEEDS_NETWORK: commands whose point is the network or the FFHQ files; offline they must fail with exit 1
  and a single `error:` line, which is checked;
- SERVERS: `serve` runs until the page answers on a free port, then is stopped;
- `torchrun ... -m styleclip ...` lines run as written when they are local (one node, <= 2 processes: gloo on
  the CPU); the multi-GPU and multi-node ones are skipped.
The default suite runs FAST (commands that take a few seconds as written); the rest are marked slow.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SUBCOMMANDS = {"generate", "edit", "convert", "faces", "invert", "weights", "train-mapper", "relevance", "sweep",
               "serve", "toy", "prepare"}

# doc command (as extracted) -> (arguments actually run, why)
OVERRIDES: dict[str, tuple[str, str]] = {
    'styleclip train-mapper --prompt "mohawk" --no-fine --steps 50000 --init none --out mappers/mohawk':
        ('train-mapper --prompt "mohawk" --no-fine --steps 3 --init none --val-interval 2 --num-latents 16 '
         '--out mappers/mohawk',
         "the paper's 50,000 steps take hours"),
    'styleclip train-mapper --prompt "mohawk" --latents train_faces.pt --out mappers/mohawk_e4e':
        ('train-mapper --prompt "mohawk" --latents train_faces.pt --steps 3 --val-interval 2 --out mappers/mohawk_e4e',
         "50,000 steps by default"),
    'styleclip train-mapper --prompt "mohawk" --steps 50000 --out mappers/mohawk --resume':
        ('train-mapper --prompt "mohawk" --no-fine --steps 5 --val-interval 2 --num-latents 16 --out mappers/mohawk '
         '--resume', "continues the 3-step run above to 5 steps instead of 50,000"),
    'styleclip train-mapper --prompt "a face with purple hair" --steps 200 --out mappers/purple_hair':
        ('train-mapper --prompt "a face with purple hair" --steps 4 --val-interval 2 --num-latents 16 '
         '--out mappers/purple_hair', "200 steps: a minute or two on 2 cores"),
    "styleclip toy train classifier --minutes 8":
        ("toy train classifier --tiny --steps 2 --eval-size 16", "8 minutes"),
    "styleclip toy train classifier --minutes 8 --out toy-runs/classifier --threads 1":
        ("toy train classifier --tiny --steps 2 --eval-size 16 --out toy-runs/classifier --threads 1", "8 minutes"),
    "styleclip toy train clip --minutes 40 --out toy-runs/clip --eval-every 300 --threads 1":
        ("toy train clip --tiny --steps 2 --eval-size 16 --out toy-runs/clip --eval-every 300 --threads 1",
         "40 minutes"),
    "styleclip toy train identity --minutes 7 --out toy-runs/identity --threads 1":
        ("toy train identity --tiny --steps 2 --eval-size 16 --out toy-runs/identity --threads 1", "7 minutes"),
    "styleclip toy train clip --resume --minutes 60 --out toy-runs/clip":
        ("toy train clip --tiny --resume --steps 3 --eval-size 16 --out toy-runs/clip", "an hour"),
    "styleclip toy train clip --init-from styleclip/assets/toy_faces --start-step 4650 --minutes 60 "
    "--out toy-runs/clip2":
        ("toy train clip --init-from styleclip/assets/toy_faces --start-step 4650 --steps 4651 --batch-size 8 "
         "--eval-size 16 --out toy-runs/clip2", "an hour"),
    "styleclip toy train generator --steps 14000 --anneal --eval-every 2500 --eval-size 256 --out toy-runs/gen":
        ("toy train generator --tiny --steps 2 --anneal --eval-every 2500 --eval-size 16 --out toy-runs/gen",
         "79 minutes"),
    "styleclip toy eval generator --weights toy-runs/gen --n 1000":
        ("toy eval generator --weights toy-runs/gen --n 16", "the --tiny run above (16 px) on 16 samples "
         "(1,000: minutes)"),
    "styleclip toy stylespace --images 20":
        ("toy stylespace --help", "writes into the package's shipped assets and takes an hour: only --help"),
    'styleclip toy train clip --init-from styleclip/assets/toy_faces --start-step 5650 --lr 2e-4 --steps N '
    '--anneal --partial-captions 0.5 --out toy-runs/clip':
        ("toy train clip --init-from styleclip/assets/toy_faces --start-step 5650 --lr 2e-4 --steps 5651 "
         "--batch-size 8 --anneal --partial-captions 0.5 --eval-size 16 --out toy-runs/clip3",
         "N is the user's choice: one step"),
    'styleclip toy train clip --init-from styleclip/assets/toy_faces --start-step 4650 --lr 2e-4 --steps 5650 '
    '--anneal --partial-captions 0.5 --eval-every 250 --out toy-runs/clip3':
        ("toy train clip --init-from styleclip/assets/toy_faces --start-step 4650 --lr 2e-4 --steps 4651 "
         "--batch-size 8 --anneal --partial-captions 0.5 --eval-every 250 --eval-size 16 --out toy-runs/clip3",
         "1,000 steps take 14 minutes: one step"),
    "styleclip train-mapper --universal --model toy-faces --minutes 20 --out mappers/universal":
        ("train-mapper --universal --model toy-faces --steps 2 --batch-size 2 --num-latents 8 --out mappers/universal",
         "20 minutes"),
}

# the network (or FFHQ's files) is their point: offline, one `error:` line and exit 1
NEEDS_NETWORK = {"styleclip weights download ffhq", "styleclip weights path ffhq",
                 "styleclip prepare --checkpoint generator.safetensors --out prepared --fast"}  # FFHQ's CLIP

# cheap as written (a few seconds each): the default suite runs these
FAST = {
    "styleclip generate --seed 0 --truncation 0.7 --out face.png",
    'styleclip edit --engine global --prompt "a face with blond hair"',
    # each edit run writes into its own folder, <prompt>-<engine>: the chain reads the global edit's latent there
    'styleclip edit --engine global --prompt "a face with a beard" --latent '
    'outputs/a-face-with-blond-hair-global/seed0_latent.pt --out chained',
    "styleclip edit --engine mapper --prompt mohawk",
    "styleclip weights list",
    "styleclip weights path ffhq",
    "styleclip convert stylegan2-ffhq-config-f.pt generator.safetensors",
}


def _spans(text: str):
    """(line number, command) for fenced-block lines and inline code spans that are styleclip commands."""
    out, in_block = [], False
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_block = not in_block
            i += 1
            continue
        if in_block:
            cmd, start = line.strip(), i
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1].rstrip() + " " + lines[i].strip()
            cmd = re.sub(r"^\$\s+", "", cmd)
            if re.match(r"^(python -m )?styleclip ", cmd) or re.match(r"^torchrun .*-m styleclip ", cmd):
                out.append((start + 1, cmd))
        i += 1
    # inline spans (outside fences), which may wrap over a line break
    prose = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    for m in re.finditer(r"`([^`]+)`", prose):
        span = " ".join(m.group(1).split())
        if re.match(r"^(python -m )?styleclip ", span):
            out.append((prose[:m.start()].count("\n") + 1, span))
    return sorted(out)


def doc_commands() -> list[tuple[str, str]]:
    """(where, command) for every styleclip command in the docs, in document order, deduplicated."""
    seen, out = set(), []
    for doc in DOCS:
        for line, cmd in _spans(doc.read_text()):
            cmd = _strip_comment(cmd)
            if cmd not in seen:
                seen.add(cmd)
                out.append((f"{doc.relative_to(ROOT)}:{line}", cmd))
    return out


def _torchrun_local(cmd: str) -> bool:
    """A torchrun line this machine can run: one node, at most 2 processes (CPU, gloo)."""
    m = re.search(r"--nproc-per-node[ =](\d+)", cmd)
    return "--nnodes" not in cmd and m is not None and int(m.group(1)) <= 2


def _strip_comment(cmd: str) -> str:
    cmd = re.sub(r"\s+#\s.*$", "", cmd)  # a trailing shell comment (no doc command has '#' in its arguments)
    return re.sub(r"^python -m styleclip ", "styleclip ", cmd)


def _args(cmd: str) -> list[str]:
    if cmd in OVERRIDES:
        return shlex.split(OVERRIDES[cmd][0])
    args = shlex.split(cmd)[1:]
    if len(args) == 1 or (args[0] == "toy" and args[1:] in (["train"], ["eval"])):
        return args + ["--help"]  # a mention of a command in a sentence
    return ["toy-faces" if a == "ffhq" and i > 0 and args[i - 1] == "--model" else a for i, a in enumerate(args)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache: Path) -> dict:
    env = dict(os.environ, STYLECLIP_OFFLINE="1", STYLECLIP_CACHE=str(cache), PYTHONPATH=str(ROOT),
               COLUMNS="120", GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1")
    env.pop("STYLECLIP_WEIGHTS_DIR", None)
    return env


def _serve(args: list[str], cwd: Path, env: dict, timeout: float = 120) -> tuple[int, str]:
    port = _free_port()
    if "--port" in args:
        args[args.index("--port") + 1] = str(port)
    else:
        args += ["--port", str(port)]
    if "--host" in args:
        args[args.index("--host") + 1] = "127.0.0.1"
    proc = subprocess.Popen([sys.executable, "-m", "styleclip", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        return 0, ""
            except OSError:
                time.sleep(1)
        return proc.poll() if proc.poll() is not None else -1, "the page did not answer"
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        _serve.last_output = out


def _fixtures(folder: Path) -> None:
    """Files the docs assume the reader has: a photo, a reference face (`--target-image face.png`, named before
    the `generate` line that writes one), training latents, a checkpoint to convert."""
    import torch
    from PIL import Image
    from skimage import data

    from helpers import parity_state_dict
    from styleclip.factory import load_generator
    from styleclip.util.imaging import to_pil
    from styleclip.sources import latents_from_seeds

    (folder / "styleclip").symlink_to(ROOT / "styleclip")  # the docs' paths are a source checkout's (assets)
    Image.fromarray(data.astronaut()).save(folder / "photo.jpg")
    g = load_generator("toy-faces")
    with torch.no_grad():
        to_pil(g.synthesis(latents_from_seeds(g, [3]).w_plus))[0].save(folder / "face.png")
    torch.save(latents_from_seeds(g, list(range(12))).w_plus.cpu(), folder / "train_faces.pt")
    _, sd = parity_state_dict()
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(512)}, folder / "stylegan2-ffhq-config-f.pt")


def run_doc_command(cmd: str, cwd: Path, cache: Path) -> tuple[int, str]:
    env = _env(cache)
    if cmd.startswith("torchrun "):
        if not _torchrun_local(cmd):
            pytest.skip("needs several GPUs or nodes (docs/distributed.md); the local torchrun lines run")
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", *shlex.split(cmd)[1:]], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=900)
        return r.returncode, r.stdout + r.stderr
    args = _args(cmd)
    if args[0] == "serve" and "--help" not in args:
        rc, why = _serve(args, cwd, env)
        return rc, why + "\n" + getattr(_serve, "last_output", "")
    r = subprocess.run([sys.executable, "-m", "styleclip", *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=900)
    return r.returncode, r.stdout + r.stderr


def _check(where: str, cmd: str, rc: int, output: str) -> None:
    if cmd in NEEDS_NETWORK:
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert rc == 1 and len(errors) == 1 and "Traceback" not in output, \
            f"{where}: `{cmd}` offline should fail with one error line:\n{output[-3000:]}"
    else:
        assert rc == 0, f"{where}: `{cmd}` exited {rc}:\n{output[-3000:]}"


COMMANDS = doc_commands()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs-commands")
    _fixtures(folder)
    return folder, tmp_path_factory.mktemp("docs-cache")


def test_commands_found_and_tables_current():
    """The extraction finds the README's commands; every override / fast entry still names a doc command."""
    cmds = {c for _, c in COMMANDS}
    assert 'styleclip edit --prompt "mohawk" --seeds 0-3 --out outputs' in cmds
    assert len(cmds) >= 25, sorted(cmds)
    for table in (OVERRIDES, NEEDS_NETWORK, FAST):
        stale = [c for c in table if c not in cmds]
        assert not stale, f"no longer in the docs: {stale}"
    bad = [c for c in cmds if not c.startswith("torchrun ") and shlex.split(c)[1] not in SUBCOMMANDS]
    assert not bad, f"the docs name commands that do not exist: {bad}"


def test_fast_doc_commands(workdir, monkeypatch):
    """The cheap commands, in document order, exactly as written (--model ffhq as toy-faces); in this process
    (typer's runner, in the shared folder) to save the interpreter start-ups; the slow test runs them all as
    separate processes."""
    from typer.testing import CliRunner

    from styleclip.cli import app

    folder, cache = workdir
    monkeypatch.chdir(folder)
    for k, v in _env(cache).items():
        if k.startswith("STYLECLIP"):
            monkeypatch.setenv(k, v)
    runner = CliRunner()
    ran = 0
    for where, cmd in COMMANDS:
        if cmd in FAST:
            r = runner.invoke(app, _args(cmd))
            _check(where, cmd, r.exit_code, r.output + (repr(r.exception) if r.exception else ""))
            ran += 1
    assert ran == len(FAST)


@pytest.mark.slow
@pytest.mark.parametrize("where,cmd", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_doc_command(where, cmd, tmp_path_factory):
    """Every command, in document order in one folder (parametrized in that order), overrides as listed."""
    folder = _shared_folder(tmp_path_factory)
    rc, out = run_doc_command(cmd, folder, folder.parent / (folder.name + "-cache"))
    _check(where, cmd, rc, out)


_SHARED: dict = {}


def _shared_folder(factory) -> Path:
    if "folder" not in _SHARED:
        folder = factory.mktemp("docs-commands-all")
        (folder.parent / (folder.name + "-cache")).mkdir(exist_ok=True)
        _fixtures(folder)
        _SHARED["folder"] = folder
    return _SHARED["folder"]
