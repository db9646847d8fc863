"""Shared by the speed benchmarks: the machine line, interleaved timing, the machine's measured limit.

The project's benchmark machine is shared, so absolute times drift with other load. Every benchmark therefore
prints the machine and its load (os.getloadavg) at start and end, times the variants it compares interleaved
(round r runs every variant once, in a rotated order) and reports medians and the median of the per-round
ratios against its baseline, which cancel most of the drift.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: bfloat16 convolutions run natively (elsewhere they are emulated, many times slower)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load() -> str:
    try:
        return "load %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load n/a"


def machine_line(device: str = "cpu", malloc: str | None = None) -> str:
    """One line: device, cores, torch and threads, malloc setting, date, current load average (1, 5, 15 min)."""
    import torch

    from styleclip.util.runtime import freed_memory_kept

    if malloc is None:
        malloc = "freed memory kept, as the CLI" if freed_memory_kept() else "glibc's default malloc"

    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}), host {cpu_name()}"
    else:
        dev = f"{cpu_name()}{' (AVX512-BF16)' if cpu_has_bf16() else ''}, {os.cpu_count()} cores"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{dev}, torch {torch.__version__} ({torch.get_num_threads()} threads), {malloc}, Python "
            f"{platform.python_version()}, {date}, {load()}")


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(variants: dict, rounds: int, device: str = "cpu", warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of each callable per round; round r runs all variants once, order rotated by r."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    sync(device)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            sync(device)
            t = time.perf_counter()
            variants[name]()
            sync(device)
            times[name].append(time.perf_counter() - t)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def ratio(base: list[float], other: list[float]) -> float:
    """Median over rounds of base / other (> 1: other is faster)."""
    return statistics.median(b / o for b, o in zip(base, other))


def limit_probe(device: str = "cpu", dtype: str = "fp32"):
    """A callable running the machine-limit workload and its FLOPs: a 3x3 convolution 512 -> 512 channels on
    a 64 x 64 image (the generator's largest layer, where oneDNN/cuDNN reach their best rate) in `dtype`."""
    import torch
    import torch.nn.functional as F

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    side = 64 if not device.startswith("cuda") else 128
    x = torch.randn(4 if device.startswith("cuda") else 1, 512, side, side, device=device, dtype=dt)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(512, 512, 3, 3, device=device, dtype=dt)
    flops = 2 * x.shape[0] * side * side * 512 * 512 * 9

    def run():
        with torch.no_grad():
            F.conv2d(x, w, padding=1)

    return run, flops


def count_flops(fn) -> int:
    """FLOPs of the convolutions and matrix products fn() runs (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()
