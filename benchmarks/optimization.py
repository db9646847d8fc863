"""Latent optimization: seconds per step and peak memory, ours against the official way, same machine.

Random-weight networks of the real configs: GeneratorConfig(size=256 / 1024) and a random ViT-B-32-quickgelu CLIP
(no download); no identity net. Each (size, variant) runs in a fresh subprocess so that its peak memory
(VmHWM) is its own; both variants take the same number of steps and the median step time is reported.

Baseline ("the official way", optimization/run_optimization.py): generator and CLIP weights not frozen
(requires_grad True, so every backward also computes their weight gradients), the text tokenised and encoded in
every step (CLIPLoss calls model(image, text)), the CLIP input made by the 7x nearest upsample + average pool
(a 7168 px intermediate at 1024), raw [-1,1] values into CLIP, L2 as a sum of squares, Adam lr 0.1.
Ours: OptimizationEditor (frozen networks, input-only backward, text embedded once, box-filter resize as a
separable matrix, CLIP normalisation); "ours-ckpt" adds activation checkpointing of the two highest
resolutions (`--checkpoint-min-res`): less memory for about one extra forward of those blocks.

    flock /tmp/styleclip-heavy.lock python benchmarks/optimization.py --sizes 256,1024 --steps 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "a person with purple hair"


def vmhwm_gib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def build(size: int, device: str):
    import torch

    from styleclip.clip_model import ClipEncoder
    from styleclip.nets.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(size=size)).eval()
    clip = ClipEncoder.from_pretrained("ViT-B-32-quickgelu", None)
    g.w_avg.copy_(g.mean_latent(512))
    return g.to(device), clip.to(device)


def run_ours(size: int, steps: int, device: str, checkpoint_min_res: int | None = None) -> list[float]:
    import torch

    from styleclip.editors.optimization import OptimizationConfig, OptimizationEditor
    from styleclip.types import Latent, Prompt

    g, clip = build(size, device)
    g.requires_grad_(False)
    w = g.broadcast(g.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)).to(device), 0.7))
    stamps = []
    editor = OptimizationEditor(g, clip, config=OptimizationConfig(steps=steps + 1, id_lambda=0.0,
                                                                   checkpoint_min_res=checkpoint_min_res))
    t0 = time.perf_counter()
    editor.edit(Latent(w.detach()), Prompt(PROMPT), progress=lambda d, t: stamps.append(time.perf_counter()))
    times = [b - a for a, b in zip([t0] + stamps[:-1], stamps)]
    return times[1:]  # the first step also embeds the text and renders the source image


def run_official(size: int, steps: int, device: str) -> list[float]:
    import torch

    from styleclip.clip_model import official_resize
    from styleclip.losses import latent_l2

    g, clip = build(size, device)
    g.requires_grad_(True)  # as upstream: nothing is frozen
    clip.model.requires_grad_(True)
    w_init = g.broadcast(g.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)).to(device),
                                   0.7)).detach()
    w = w_init.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.1)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        img = g.synthesis(w)
        tokens = clip.tokenizer([PROMPT]).to(device)  # re-encoded every step
        image_features = clip.model.encode_image(official_resize(img))
        text_features = clip.model.encode_text(tokens)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        c_loss = 1 - image_features @ text_features.t()
        loss = c_loss.sum() + 0.008 * latent_l2(w, w_init).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return times[1:]


def child(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["variant"] == "official":
        times = run_official(spec["size"], spec["steps"], spec["device"])
    else:  # "ours", or "ours-ckpt": activation checkpointing of the top two resolutions
        ckpt = spec["size"] // 2 if spec["variant"] == "ours-ckpt" else None
        times = run_ours(spec["size"], spec["steps"], spec["device"], ckpt)
    if spec["device"] == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = vmhwm_gib()
    return {**spec, "median_s": statistics.median(times), "peak_gib": peak}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up step)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="official,ours,ours-ckpt")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    rows = []
    for size in map(int, args.sizes.split(",")):
        for variant in args.variants.split(","):
            spec = dict(size=size, variant=variant, steps=args.steps, device=args.device, threads=args.threads)
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                                 text=True)
            if out.returncode != 0:
                print(f"failed {spec}: {out.stderr.strip().splitlines()[-3:]}", file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"  {size} {variant}: {r['median_s']:.2f} s/step, peak {r['peak_gib']:.2f} GiB", file=sys.stderr,
                  flush=True)
    print(f"\nLatent optimization on {args.device} ({args.threads} threads), median of {args.steps} steps\n")
    print("| size | variant | s / step | peak GiB | speed-up | memory vs official |")
    print("|---:|---|---:|---:|---:|---:|")
    base = {r["size"]: r for r in rows if r["variant"] == "official"}
    for r in rows:
        b = base.get(r["size"])
        speed = f"{b['median_s'] / r['median_s']:.2f}x" if b else "-"
        mem = f"{r['peak_gib'] / b['peak_gib']:.2f}" if b else "-"
        print(f"| {r['size']} | {r['variant']} | {r['median_s']:.2f} | {r['peak_gib']:.2f} | {speed} | {mem} |")


if __name__ == "__main__":
    main()
