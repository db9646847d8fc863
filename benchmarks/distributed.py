"""Scaling of the torch.distributed paths: 1 vs N processes (torchrun, gloo on CPU / NCCL on CUDA).

    python -m benchmarks.distributed                       # 1 and 2 processes on CPU, debug models
    python -m benchmarks.distributed --procs 1,2,4 --out docs/benchmarks/distributed.md

Each setting is one torchrun launch; inside it every workload runs `--reps` times between barriers and the
median wall time is kept (launch and imports are not counted; they are reported apart). Workloads on the
debug generator (32 px) and debug CLIP, one thread per process: style statistics, exact and fast relevance,
mapper training at a fixed effective batch. The machine's load average is printed before and after: on a shared
machine the figures say what this machine gave at that time, nothing more.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "style statistics (20,000 samples)": "stats",
    "exact relevance (208 channels x 2 images)": "exact",
    "fast relevance (208 channels x 8 images)": "fast",
    "mapper training (10 steps, effective batch 8)": "mapper",
}


def worker(out: Path, reps: int, device: str) -> None:
    import torch

    from styleclip.util import distributed
    from styleclip import stylespace as ss
    from styleclip.training.mapper import MapperTrainConfig, MapperTrainer
    from styleclip.factory import debug_generator, load_clip, load_identity

    world = distributed.init_from_env(device)
    torch.set_num_threads(1)
    dev = distributed.local_device(device)
    g, clip, identity = debug_generator().to(dev), load_clip("debug", device=dev), load_identity("debug", device=dev)
    stats = ss.compute_stats(g, n=2000)
    tmp = out / "work"  # shared by the ranks

    def run(kind: str, rep: int) -> None:
        folder = tmp / f"{kind}{rep}"
        if kind == "stats":
            ss.compute_stats(g, n=20_000, batch=1000, checkpoint=folder)
        elif kind == "exact":
            ss.compute_relevance(g, clip, stats, n_images=2, checkpoint=folder)
        elif kind == "fast":
            ss.estimate_relevance(g, clip, stats, n_images=8, checkpoint=folder)
        else:
            cfg = MapperTrainConfig(steps=10, batch_size=8, num_latents=64, num_val_latents=0, val_interval=1000,
                                    save_interval=1000, image_interval=1000, seed=rep + 1)  # the warm-up is rep -1
            MapperTrainer(g, clip, "a smiling face", identity=identity, config=cfg).run()

    times = {}
    for kind in WORKLOADS.values():
        run(kind, -1)  # warm-up
        ts = []
        for rep in range(reps):
            distributed.barrier()
            t0 = time.perf_counter()
            run(kind, rep)
            distributed.barrier()
            ts.append(time.perf_counter() - t0)
        times[kind] = statistics.median(ts)
    if world.is_main:
        (out / "times.json").write_text(json.dumps({"world": world.size, "times": times}))
    distributed.destroy()


def launch(nproc: int, reps: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as d, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
               "127.0.0.1", "--master-port", str(port), "-m", "benchmarks.distributed", "--worker", d, "--reps", str(reps),
               "--device", device]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   OMP_NUM_THREADS="1", STYLECLIP_OFFLINE="1", STYLECLIP_CACHE=str(Path(d) / "cache"))
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"torchrun --nproc-per-node {nproc} failed:\n{r.stderr[-3000:]}")
        result = json.loads((Path(d) / "times.json").read_text())
    result["launch_total_s"] = wall
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", default="1,2", help="comma-separated process counts")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.reps, args.device)
    procs = [int(p) for p in args.procs.split(",")]
    load_before = os.getloadavg()
    results = {n: launch(n, args.reps, args.device) for n in procs}
    load_after = os.getloadavg()
    base = results[procs[0]]["times"]
    head = "| workload | " + " | ".join(f"{n} proc: s (speed-up)" for n in procs) + " |"
    lines = [head, "|" + "---|" * (len(procs) + 1)]
    for label, kind in WORKLOADS.items():
        cells = [f"{results[n]['times'][kind]:.2f} ({base[kind] / results[n]['times'][kind]:.2f}x)" for n in procs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| whole launch incl. imports, warm-up | " +
                 " | ".join(f"{results[n]['launch_total_s']:.1f}" for n in procs) + " |")
    import torch

    note = (f"Generated by `python -m benchmarks.distributed --procs {args.procs} --reps {args.reps} --device "
            f"{args.device}` on {platform.platform()}, {os.cpu_count()} CPU cores, torch {torch.__version__}; "
            f"median of {args.reps} runs per cell, one thread per process; load average (1, 5, 15 min) "
            f"{', '.join(f'{x:.1f}' for x in load_before)} before and "
            f"{', '.join(f'{x:.1f}' for x in load_after)} after (the machine was shared with other jobs).")
    text = "\n".join(lines) + "\n\n" + note + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("# Distributed scaling (generated)\n\n" + text)


if __name__ == "__main__":
    main()
