"""Time and peak memory of Generator.synthesis on CPU (or CUDA): ours (non-fused modulated conv) against the
fused grouped-convolution form (rosinality / official layout) in the same run, float32 and bfloat16 autocast.

    python benchmarks/generator.py                 # 256 and 1024, batch 1 and 4
    python benchmarks/generator.py --sizes 256 --batches 1 --repeats 3

Each configuration runs in a fresh subprocess so that peak memory (max RSS, or CUDA max allocated) is its own.
Random weights of the real architecture (config-f); timing does not depend on the weight values.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def fused_modulated_conv2d(x, weight, styles, *, demodulate=True, up=False, blur_kernel_1d=None, eps=1e-8,
                           weight_sq=None):
    """Baseline: per-sample modulated weights and one grouped convolution (the official 'fused' form)."""
    import torch.nn.functional as F

    from styleclip.nets.ops import upfirdn2d

    n, ci = styles.shape
    co, _, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.view(n, 1, ci, 1, 1).to(weight.dtype)
    if demodulate:
        w = w * (w.square().sum([2, 3, 4], keepdim=True) + eps).rsqrt()
    x = x.reshape(1, n * ci, *x.shape[2:])
    if up:
        w = w.transpose(1, 2).reshape(n * ci, co, kh, kw)
        out = F.conv_transpose2d(x, w.to(x.dtype), stride=2, groups=n)
        out = out.view(n, co, *out.shape[2:])
        return upfirdn2d(out, blur_kernel_1d, pad=(1, 1), gain=4.0)
    out = F.conv2d(x, w.reshape(n * co, ci, kh, kw).to(x.dtype), padding=kh // 2, groups=n)
    return out.view(n, co, *out.shape[2:])


def run_one(size: int, batch: int, dtype: str, impl: str, repeats: int, device: str) -> dict:
    import resource

    import torch

    import styleclip.nets.stylegan2 as sg

    if impl == "fused":
        sg.modulated_conv2d = fused_modulated_conv2d
    torch.manual_seed(0)
    g = sg.Generator(sg.GeneratorConfig(size=size)).eval().requires_grad_(False).to(device)
    w = torch.randn(batch, g.num_ws, 512, device=device)
    ctx = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if dtype == "bf16"
           else torch.autocast(torch.device(device).type, enabled=False))
    times = []
    with torch.no_grad(), ctx:
        for i in range(repeats + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            img = g.synthesis(w)
            if device == "cuda":
                torch.cuda.synchronize()
            if i:  # the first run warms up (allocator, oneDNN primitive cache)
                times.append(time.perf_counter() - t)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"size": size, "batch": batch, "dtype": dtype, "impl": impl, "median_s": statistics.median(times),
            "peak_gib": peak, "finite": bool(torch.isfinite(img).all())}


def cpu_has_bf16() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                    help="include bfloat16 autocast (auto: on CUDA, or on CPUs with AVX512-BF16/AMX)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(**json.loads(args.child))))
        return
    configs = [("fused", "fp32"), ("ours", "fp32")]
    if args.bf16 == "yes" or (args.bf16 == "auto" and (args.device == "cuda" or cpu_has_bf16())):
        configs.append(("ours", "bf16"))
    else:
        print("skipping bfloat16: this CPU has no AVX512-BF16/AMX, where bf16 convolutions are emulated and "
              "many times slower (force with --bf16 yes)", file=sys.stderr)
    rows = []
    for size in map(int, args.sizes.split(",")):
        for batch in map(int, args.batches.split(",")):
            for impl, dtype in configs:
                spec = dict(size=size, batch=batch, dtype=dtype, impl=impl, repeats=args.repeats, device=args.device)
                out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                                     text=True)
                if out.returncode != 0:
                    print(f"failed {spec}: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(f"  {size:5d} b{batch} {impl:5s} {dtype}: {r['median_s']:.3f} s, peak {r['peak_gib']:.2f} GiB",
                      file=sys.stderr, flush=True)
    print(f"\nGenerator.synthesis on {args.device} (median of {args.repeats}; peak = max RSS of the process"
          f"{' / CUDA max allocated' if args.device == 'cuda' else ''})\n")
    print("| size | batch | impl | dtype | median s | s / image | peak GiB | speed-up vs fused fp32 |")
    print("|---:|---:|---|---|---:|---:|---:|---:|")
    base = {(r["size"], r["batch"]): r["median_s"] for r in rows if r["impl"] == "fused"}
    for r in rows:
        ref = base.get((r["size"], r["batch"]))
        ratio = f"{ref / r['median_s']:.2f}x" if ref else "-"
        print(f"| {r['size']} | {r['batch']} | {r['impl']} | {r['dtype']} | {r['median_s']:.3f} | "
              f"{r['median_s'] / r['batch']:.3f} | {r['peak_gib']:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
