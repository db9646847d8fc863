"""Time the encoders on CPU with random weights (real architectures, no download):

- CLIP ViT-B-32-quickgelu image encode of a 1024 px generator image, forward and forward+backward, with our
  box-filter resize vs the official upsample-x7 + avg-pool resize (the baseline), plus each resize alone;
- peak memory of each resize path, measured in a fresh process (VmHWM - VmRSS);
- ArcFace IR-SE50 embed (1024 px -> face crop -> 112) per image, forward and forward+backward.

Prints a table of medians over a few repeats. Run: `flock /tmp/styleclip-heavy.lock python -m benchmarks.encoders`
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from styleclip.encoders.clip import ClipEncoder, official_resize

ROOT = Path(__file__).resolve().parents[1]


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def resize_memory_mb(mode: str, size: int) -> float:
    """Peak RSS growth of one resize in a fresh process."""
    code = f"""
import torch
from styleclip.encoders.clip import ClipEncoder, official_resize
m = torch.nn.Module(); m.visual = torch.nn.Module(); m.visual.image_size = 224
enc = ClipEncoder(m, None, official_input=True)
run = (lambda x: official_resize(x, 224)) if {mode!r} == "official" else enc.preprocess
run(torch.rand(1, 3, 64, 64))
img = torch.rand(1, 3, {size}, {size})
def mb(f):
    return int(next(l for l in open("/proc/self/status") if l.startswith(f + ":")).split()[1]) / 1024
cur = mb("VmRSS"); run(img); print(mb("VmHWM") - cur)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024, help="generator image size")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import open_clip

    from styleclip.encoders.identity import ArcFaceIdentity

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    ours = ClipEncoder(model, None)
    official = ClipEncoder(model, None, official_input=True)
    img = torch.rand(1, 3, args.size, args.size) * 2 - 1

    def clip_fwd(resize):
        def run():
            with torch.no_grad():
                x = resize(img)
                ours.model.encode_image(x)
        return run

    def clip_fwd_bwd(resize):
        def run():
            x = img.clone().requires_grad_(True)
            ours.model.encode_image(resize(x)).sum().backward()
        return run

    box = ours.preprocess                   # box filter + CLIP normalisation (the default)
    up = lambda x: official_resize(x, 224)  # noqa: E731  the official path (no normalisation)
    rows = []
    for label, a, b in [
        ("resize only", lambda: box(img), lambda: up(img)),
        ("CLIP encode_image fwd", clip_fwd(box), clip_fwd(up)),
        ("CLIP encode_image fwd+bwd", clip_fwd_bwd(box), clip_fwd_bwd(up)),
    ]:
        with torch.no_grad() if label == "resize only" else torch.enable_grad():
            ta, tb = median_time(a, args.repeats), median_time(b, args.repeats)
        rows.append((label, ta, tb))
    mem_ours, mem_official = resize_memory_mb("ours", args.size), resize_memory_mb("official", args.size)

    ident = ArcFaceIdentity()  # random IR-SE50
    with torch.no_grad():
        t_id = median_time(lambda: ident.embed(img), args.repeats)

    def id_bwd():
        x = img.clone().requires_grad_(True)
        ident.embed(x).sum().backward()
    t_id_bwd = median_time(id_bwd, args.repeats)
    _ = official

    print(f"\nencoders on CPU ({args.threads} threads), {args.size} px input, batch 1, "
          f"median of {args.repeats}; torch {torch.__version__}\n")
    print(f"| {'step':<28} | {'ours (box matrix)':>18} | {'official (x7 + avgpool)':>24} | {'speed-up':>8} |")
    print(f"|{'-' * 30}|{'-' * 20}|{'-' * 26}|{'-' * 10}|")
    for label, ta, tb in rows:
        print(f"| {label:<28} | {ta * 1e3:>15.1f} ms | {tb * 1e3:>21.1f} ms | {tb / ta:>7.2f}x |")
    print(f"| {'resize peak memory':<28} | {mem_ours:>15.1f} MB | {mem_official:>21.1f} MB | "
          f"{mem_official / max(mem_ours, 1e-9):>7.1f}x |")
    print(f"\n| {'identity net':<28} | {'per image':>18} |")
    print(f"|{'-' * 30}|{'-' * 20}|")
    print(f"| {'IR-SE50 embed fwd':<28} | {t_id * 1e3:>15.1f} ms |")
    print(f"| {'IR-SE50 embed fwd+bwd':<28} | {t_id_bwd * 1e3:>15.1f} ms |")
    print(json.dumps({"resize_ms": [rows[0][1] * 1e3, rows[0][2] * 1e3],
                      "clip_fwd_ms": [rows[1][1] * 1e3, rows[1][2] * 1e3],
                      "clip_fwd_bwd_ms": [rows[2][1] * 1e3, rows[2][2] * 1e3],
                      "resize_peak_mb": [mem_ours, mem_official],
                      "irse50_fwd_ms": t_id * 1e3, "irse50_fwd_bwd_ms": t_id_bwd * 1e3}))


if __name__ == "__main__":
    main()
