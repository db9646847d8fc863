"""torch.distributed on CPU (gloo), 2 processes launched by torchrun: sharded style statistics and relevance equal
a single-process run, a killed rank resumes, a DDP mapper step equals a single-process step on the same global
batch, and a run resumes exactly on another number of processes."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from styleclip.util import distributed
from styleclip import stylespace as ss
from styleclip.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
import dist_worker as worker  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, nproc: int = 2, env: dict | None = None, background: bool = False, timeout: float = 600):
    """`python -m torch.distributed.run --nproc-per-node N ... args` with this tree first on the path."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *map(str, args)]
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                    OMP_NUM_THREADS="1", **(env or {}))
    if background:
        return subprocess.Popen(cmd, env=full_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(cmd, env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _check(r):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_shard_helpers_cover_everything_once():
    for n in (0, 1, 7, 10):
        for size in (1, 2, 3, 8):
            worlds = [distributed.World(r, size) for r in range(size)]
            ranges = [list(distributed.shard_range(n, w)) for w in worlds]
            assert sum(ranges, []) == list(range(n))
            assert max(map(len, ranges)) - min(map(len, ranges)) <= 1
            rr = [distributed.shard(list(range(n)), w) for w in worlds]
            assert sorted(sum(rr, [])) == list(range(n))
    assert distributed.world() == distributed.World() and not distributed.launched()
    assert float(distributed.all_reduce_sum(torch.tensor(2.0))) == 2.0  # a world of one


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """One torchrun launch (2 processes, gloo): stats, exact + fast relevance, 2 DDP mapper steps."""
    out = tmp_path_factory.mktemp("dist")
    _check(torchrun(ROOT / "tests" / "dist_worker.py", out, env={"STYLECLIP_CACHE": str(out / "cache")}))
    return out


def test_sharded_stats_and_relevance_equal_one_process(two_rank_run):
    torch.set_num_threads(1)
    g, clip, _ = worker.models()
    single = ss.compute_stats(g, **worker.STATS)
    sharded = ss.StyleStats.load(two_rank_run / "stats.safetensors", g)
    for a, b in zip(single.mean + single.std, sharded.mean + sharded.std):
        assert _max_diff(a, b) <= 1e-6
    stats = sharded
    exact = ss.compute_relevance(g, clip, stats, **worker.EXACT)
    got = ss.Relevance.load(two_rank_run / "exact.npy", g)
    assert got.layers == exact.layers and _max_diff(got.fs3, exact.fs3) <= 1e-6
    fast = ss.estimate_relevance(g, clip, stats, **worker.FAST)
    got = ss.Relevance.load(two_rank_run / "fast.npy", g)
    assert got.layers == fast.layers and _max_diff(got.fs3, fast.fs3) <= 1e-6
    assert not any(p.name.endswith(".partial") for p in two_rank_run.iterdir())  # merged and cleaned up


def _single_trainer(out_dir, **overrides):
    from styleclip.training.mapper import MapperTrainConfig, MapperTrainer

    g, clip, identity = worker.models()
    return MapperTrainer(g, clip, worker.PROMPT, identity=identity,
                         config=MapperTrainConfig(**{**worker.MAPPER, **overrides}), out_dir=out_dir,
                         teacher=worker.teacher(g))


def _mapper_state(path: Path) -> dict:
    return torch.load(path / "train_state.pt", weights_only=True)["mapper"]


def test_ddp_mapper_steps_equal_one_process_and_resume_on_one(two_rank_run, tmp_path):
    torch.set_num_threads(1)
    ddp_dir = two_rank_run / "mapper"
    single = _single_trainer(tmp_path / "single")
    single.run()
    ref = _mapper_state(tmp_path / "single")
    got = _mapper_state(ddp_dir)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.allclose(ref[k], got[k], rtol=1e-5, atol=1e-6), (k, _max_diff(ref[k], got[k]))
    logs = [json.loads(line) for line in (ddp_dir / "log.jsonl").read_text().splitlines()]
    ref_logs = [json.loads(line) for line in (tmp_path / "single" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [r["step"] for r in ref_logs]  # rank 0 alone logged
    for a, b in zip(logs, ref_logs):
        for k in ("loss", "clip", "l2", "id"):
            if k in b:
                assert abs(a[k] - b[k]) <= 1e-5 * max(1.0, abs(b[k])), (k, a[k], b[k])

    # the 2-process run resumes exactly in one process with the same effective batch
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(ddp_dir, resumed_dir)
    resumed = _single_trainer(resumed_dir, steps=4)
    assert resumed.resume() and resumed.step == 2
    resumed.run()
    straight = _single_trainer(tmp_path / "straight", steps=4)
    straight.run()
    a, b = _mapper_state(resumed_dir), _mapper_state(tmp_path / "straight")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), (k, _max_diff(a[k], b[k]))
    # another effective batch: a clear error that says how to resume
    wrong = _single_trainer(tmp_path / "x", batch_size=2)
    shutil.copy(ddp_dir / "train_state.pt", tmp_path / "x.pt")
    with pytest.raises(InputError, match=r"effective batch is 4 \(2 per process x 2\).*--batch-size 4"):
        wrong.load_state_dict(torch.load(tmp_path / "x.pt", weights_only=True), source="run")


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker of this rank (read from the children's environment)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().split()
            if int(stat[3]) != parent:
                continue
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return int(pid)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the rank's process through /proc")
def test_cli_relevance_resumes_after_a_killed_rank(tmp_path):
    """`styleclip relevance` under torchrun: rank 1 is killed after its first chunk; the relaunch skips every
    saved chunk and the merged file equals a single-process run."""
    env = {"STYLECLIP_CACHE": str(tmp_path / "cache"), "STYLECLIP_OFFLINE": "1"}
    stats_file = tmp_path / "stats.safetensors"
    g, _, _ = worker.models()
    ss.compute_stats(g, n=2000).save(stats_file)
    args = ["-m", "styleclip", "relevance", "--model", "debug", "--images", "2", "--stats", str(stats_file)]
    out = tmp_path / "two.npy"
    proc = torchrun(*args, "--out", out, env=env, background=True)
    parts = Path(str(out) + ".partial")
    deadline = time.time() + 300
    while not (parts / "rank1.npz").is_file():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    pid = _rank_pid(proc.pid, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and not out.exists(), log[-2000:]
    saved = []
    for f in parts.glob("rank*.npz"):
        with __import__("numpy").load(f) as z:
            saved += list(z["chunks"])
    assert saved
    r = _check(torchrun(*args, "--out", out, env=env))
    first = next(line for line in r.stderr.splitlines() if line.startswith("relevance (rank 0"))
    assert int(first.split(": ")[1].split("/")[0]) >= 1, first  # rank 0 started with saved chunks done
    assert not parts.exists()
    single = tmp_path / "single.npy"
    _check(subprocess.run([sys.executable, *args, "--out", str(single)], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env)))
    a, b = ss.Relevance.load(out, g), ss.Relevance.load(single, g)
    assert _max_diff(a.fs3, b.fs3) <= 1e-6


@pytest.mark.slow
def test_cli_train_mapper_two_processes_then_resume_on_one(tmp_path):
    """`styleclip train-mapper` under torchrun: rank 0 alone writes; the run resumes in one process with the
    same effective batch and ends where an uninterrupted one-process run ends."""
    env = {"STYLECLIP_CACHE": str(tmp_path / "cache"), "STYLECLIP_OFFLINE": "1"}
    common = ["-m", "styleclip", "train-mapper", "--model", "debug", "--prompt", "a smiling face",
              "--num-latents", "16", "--val-interval", "2", "--save-interval", "2", "--image-interval", "2"]
    two = tmp_path / "two"
    r = _check(torchrun(*common, "--steps", "2", "--batch-size", "2", "--out", two, env=env))
    assert r.stdout.count("wrote ") == 1  # rank 0 alone reports
    assert len((two / "log.jsonl").read_text().splitlines()) == 2  # step 0 validation + step 2
    one_env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env)
    r = subprocess.run([sys.executable, *common, "--steps", "4", "--batch-size", "2", "--out", str(two), "--resume"],
                       capture_output=True, text=True, cwd=ROOT, env=one_env)
    assert r.returncode == 1 and "pass --batch-size 4 (per process)" in r.stderr
    _check(subprocess.run([sys.executable, *common, "--steps", "4", "--batch-size", "4", "--out", str(two),
                           "--resume"], capture_output=True, text=True, cwd=ROOT, env=one_env))
    straight = tmp_path / "straight"
    _check(subprocess.run([sys.executable, *common, "--steps", "4", "--batch-size", "4", "--out", str(straight)],
                          capture_output=True, text=True, cwd=ROOT, env=one_env))
    a, b = _mapper_state(two), _mapper_state(straight)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), (k, _max_diff(a[k], b[k]))
