"""Generator.synthesis (inference): ours against the official code's arithmetic and the machine's limit.

    python -m benchmarks.generator                       # 1024, batch 1, 3 interleaved rounds
    python -m benchmarks.generator --sizes 256,1024 --batches 1,4 --rounds 5 --profile

Variants, timed interleaved in one process (see benchmarks/common.py): `official` (our Generator computing as
the official rosinality code does on CPU: benchmarks/official_stylegan2.py), `ours fp32`, `ours bf16` (bfloat16
autocast; on CUDA, or CPUs with AVX512-BF16/AMX), and `limit`: a 3x3 convolution 512 -> 512 on 64 x 64, the
generator's largest layer, where the convolution library reaches its best rate on this machine. The
generator's FLOPs (convolutions and products, counted by torch.utils.flop_counter) at that rate give its
floor; "of limit" = floor / time (1 = the whole forward at the best convolution rate). --profile adds the
per-operator table of one forward of ours (torch.profiler) to find where the time goes.
Random weights of the real architecture (config-f); time does not depend on the weight values.
"""
from __future__ import annotations

import argparse
import sys

from benchmarks.common import count_flops, cpu_has_bf16, interleaved, limit_probe, load, machine_line, median, ratio


def build(size: int, device: str, channel_max: int = 512):
    import torch

    from styleclip.nets.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    return Generator(GeneratorConfig(size=size, channel_max=channel_max)).eval().requires_grad_(False).to(device)


def autocast(device: str, dtype: str):
    import torch

    kind = "cuda" if device.startswith("cuda") else "cpu"
    if dtype == "fp32":
        return torch.autocast(kind, enabled=False)
    return torch.autocast(kind, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)


def measure(size: int, batch: int, rounds: int, device: str, dtypes: list[str], channel_max: int = 512,
            profile: bool = False) -> dict:
    import torch

    from benchmarks.official_stylegan2 import official_ops

    g = build(size, device, channel_max)
    w = torch.randn(batch, g.num_ws, g.config.style_dim, device=device)

    def forward(dtype, official=False):
        def run():
            with torch.no_grad(), autocast(device, dtype), (official_ops() if official else _null()):
                return g.synthesis(w)
        return run

    variants = {"official fp32": forward("fp32", official=True)}
    for dt in dtypes:
        variants[f"ours {dt}"] = forward(dt)
    probes = {}
    for dt in ["fp32"] + [d for d in dtypes if d != "fp32"]:
        probes[dt] = limit_probe(device, dt)
        variants[f"limit {dt}"] = probes[dt][0]
    with torch.no_grad():
        ref = forward("fp32")().float()
        errors = {dt: float((forward(dt)().float() - ref).abs().max()) for dt in dtypes}
        errors["official fp32"] = float((forward("fp32", True)().float() - ref).abs().max())
    flops = count_flops(lambda: forward("fp32")())
    times = interleaved(variants, rounds, device)
    rows = []
    base = times["official fp32"]
    for name in variants:
        if name.startswith("limit"):
            continue
        dt = name.split()[-1]
        rate = [probes[dt][1] / t for t in times[f"limit {dt}"]]  # FLOP/s of the probe per round
        floor = [flops / r for r in rate]
        rows.append(dict(size=size, batch=batch, variant=name, median_s=median(times[name]),
                         per_image_s=median(times[name]) / batch, speedup=ratio(base, times[name]),
                         limit_gflops=median(rate) / 1e9, of_limit=median(f / t for f, t in zip(floor, times[name])),
                         max_abs_err=errors.get(name, errors.get(dt, 0.0)), gflop=flops / 1e9))
    prof = None
    if profile:
        prof = profile_table(forward("fp32"))
    return {"rows": rows, "profile": prof, "kernel": kernel_share(forward("fp32"))}


def kernel_share(run, n: int = 5) -> dict | None:
    """Minor page faults and kernel (system) CPU seconds per forward, against user CPU seconds (getrusage;
    None where the platform has no `resource` module)."""
    try:
        import resource
    except ImportError:
        return None

    run()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(n):
        run()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"faults": (r1.ru_minflt - r0.ru_minflt) / n, "sys_s": (r1.ru_stime - r0.ru_stime) / n,
            "user_s": (r1.ru_utime - r0.ru_utime) / n}


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def profile_table(run, rows: int = 18) -> str:
    from torch.profiler import ProfilerActivity, profile

    run()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as p:
        run()
    return p.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=rows,
                                                           max_name_column_width=28, max_shapes_column_width=52)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1024")
    ap.add_argument("--batches", default="1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                    help="include bfloat16 autocast (auto: on CUDA, or on CPUs with AVX512-BF16/AMX)")
    ap.add_argument("--channel-max", type=int, default=512, help=argparse.SUPPRESS)  # tiny test runs
    ap.add_argument("--profile", action="store_true", help="print the per-operator profile of one forward")
    args = ap.parse_args(argv)
    from styleclip.util.runtime import keep_freed_memory

    keep_freed_memory()  # as the CLI does (STYLECLIP_KEEP_FREED_MEMORY=0: glibc's default)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = ["fp32"]
    if args.bf16 == "yes" or (args.bf16 == "auto" and (args.device.startswith("cuda") or cpu_has_bf16())):
        dtypes.append("bf16")
    print(f"Machine: {machine_line(args.device)}\n")
    rows, profiles, kernel = [], [], []
    for size in map(int, args.sizes.split(",")):
        for batch in map(int, args.batches.split(",")):
            out = measure(size, batch, args.rounds, args.device, dtypes, args.channel_max, args.profile)
            rows += out["rows"]
            kernel.append((size, batch, out["kernel"]))
            if out["profile"]:
                profiles.append((size, batch, out["profile"]))
            for r in out["rows"]:
                print(f"  {size} b{batch} {r['variant']}: {r['median_s']:.3f} s ({load()})", file=sys.stderr,
                      flush=True)
    print(f"Generator.synthesis on {args.device}, median of {args.rounds} interleaved rounds; speed-up = median "
          f"per-round ratio to `official fp32`; limit = the 512->512 3x3 convolution's rate in the same rounds; "
          f"of limit = (GFLOP / limit) / time; error = max |image - ours fp32| (images in about [-1, 1])\n")
    print("| size | batch | variant | median s | s / image | speed-up vs official | GFLOP | limit GFLOP/s | "
          "of limit | max abs error |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['batch']} | {r['variant']} | {r['median_s']:.3f} | {r['per_image_s']:.3f} | "
              f"{r['speedup']:.2f}x | {r['gflop']:.1f} | {r['limit_gflops']:.0f} | {r['of_limit']:.2f} | "
              f"{r['max_abs_err']:.1e} |")
    for size, batch, k in (item for item in kernel if item[2] is not None):
        print(f"\n`ours fp32` at size {size}, batch {batch}: {k['faults']:,.0f} minor page faults and {k['sys_s']:.2f} s "
              f"of kernel CPU time per forward, against {k['user_s']:.2f} s of user CPU time (getrusage, 5 forwards)")
    print(f"\nEnd: {load()}")
    for size, batch, table in profiles:
        print(f"\nProfile of one `ours fp32` forward, size {size}, batch {batch} (self CPU time per operator):\n")
        print("```\n" + table + "\n```")
    return rows


if __name__ == "__main__":
    main()
