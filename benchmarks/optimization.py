"""Latent optimization: seconds per step, peak memory and image error, ours against the official step.

    flock /tmp/styleclip-heavy.lock python -m benchmarks.optimization --sizes 1024 --steps 3 --rounds 2

Random-weight networks of the real configs (GeneratorConfig(size), a random ViT-B-32-quickgelu CLIP: no
download; cost does not depend on the weights), no identity net. Every (round, variant) runs in a fresh
subprocess so that its peak memory (VmHWM, or CUDA max allocated) is its own; rounds interleave the variants
(round r runs each once, order rotated), each run times `--steps` steps after one warm-up step, and the
speed-up is the median over rounds of official / variant (see benchmarks/common.py).

Baseline `official`: the official run_optimization.py step on our Generator computing the official way
(benchmarks/official_stylegan2.py: rosinality's CPU ops, grouped modulated convolutions, upfirdn2d_native,
NCHW, out-of-place activations), generator and CLIP not frozen (requires_grad True, so every backward also
computes their weight gradients), the text tokenised and encoded in every step (CLIPLoss calls
model(image, text)), the CLIP input made by the 7x nearest upsample + average pool (a 7168 px intermediate at
1024), raw [-1,1] values into CLIP, L2 as a sum of squares, Adam lr 0.1. How it still differs from running the
official code: CLIP is open_clip's ViT-B-32-quickgelu (the same architecture and cost as OpenAI's `clip`
ViT-B/32 the official code loads), the weights are random, and the style affines run once per layer in
`Generator.styles` rather than inside each convolution (the same arithmetic). The earlier baseline here used
our own generator ops (input-scaling convolutions, separable FIR filters), which is why it timed 8.7-9.3 s
per step where the official code took 13-16 s.

Ours: OptimizationEditor (frozen networks, a memory-saving autograd function per layer, channels_last, text
embedded once, box-filter resize as a separable matrix, CLIP normalisation); `ckpt` adds activation
checkpointing of the blocks >= size/4 (recomputed in backward); `bf16` bfloat16 autocast for the generator
and CLIP. `ours` runs keep freed memory for reuse as the CLI does (styleclip.util.runtime.keep_freed_memory:
no page faults on each step's fresh activations, at the cost of heap fragmentation in the peak); `freeing`
runs, and `ckpt` ones (the CLI frees memory when --checkpoint-min-res asks for less of it), keep glibc's
default, which returns every large block to the kernel (STYLECLIP_KEEP_FREED_MEMORY=0). `compiled`:
torch.compile of the step (`--compile`; inductor's C++ kernels on the CPU, with CUDA graphs on CUDA), compiled in
the untimed first step (the `first step` column). Image error of an
option: max and mean |final image - ours fp32's final image| after the same steps, next to the edit itself
(mean |ours fp32 final - source|): an option is harmless when its error is far below the change the edit makes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import load, machine_line, median, ratio
from styleclip.util.runtime import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]

PROMPT = "a person with purple hair"
VARIANTS = {  # name: (checkpoint_min_res as a fraction of size or None, bf16, glibc's default malloc, compile)
    "ours": (None, False, False, False),
    "ours freeing": (None, False, True, False),
    "ours ckpt": (4, False, True, False),  # as the CLI: --checkpoint-min-res asks for less memory, so it frees
    "ours bf16": (None, True, False, False),
    "ours bf16 freeing": (None, True, True, False),
    "ours ckpt bf16": (4, True, True, False),
    "ours compiled": (None, False, False, True),
    "ours compiled bf16": (None, True, False, True),
}


def vmhwm_gib() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def build(size: int, device: str, tiny: bool):
    import torch

    from styleclip.encoders.clip import DEBUG_CLIP_CONFIG, ClipEncoder
    from styleclip.nets.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    cfg = GeneratorConfig(size=size, channel_max=64) if tiny else GeneratorConfig(size=size)
    g = Generator(cfg).eval()
    clip = ClipEncoder.from_config(DEBUG_CLIP_CONFIG) if tiny else ClipEncoder.from_pretrained("ViT-B-32-quickgelu", None)
    g.w_avg.copy_(g.mean_latent(512))
    return g.to(device), clip.to(device)


def source_latent(g, device):
    import torch

    z = torch.randn(1, g.config.style_dim, generator=torch.Generator().manual_seed(0)).to(device)
    return g.broadcast(g.mapping(z, 0.7)).detach()


def run_ours(g, clip, steps: int, device: str, ckpt: int | None, bf16: bool, compile_: bool = False):
    from styleclip.editors.optimization import OptimizationConfig, OptimizationEditor
    from styleclip.types import Latent, Prompt

    g.requires_grad_(False)
    stamps = []
    config = OptimizationConfig(steps=steps + 1, id_lambda=0.0, checkpoint_min_res=ckpt, bf16=bf16, compile=compile_)
    editor = OptimizationEditor(g, clip, config=config)
    t0 = time.perf_counter()
    result = editor.edit(Latent(source_latent(g, device)), Prompt(PROMPT),
                         progress=lambda d, t: stamps.append(_synced(device)))
    times = [b - a for a, b in zip([t0] + stamps[:-1], stamps)]
    # the first step also embeds the text, renders the source (and compiles)
    return times[1:], result.image, result.source_image, times[0]


def _synced(device):
    from benchmarks.common import sync

    sync(device)
    return time.perf_counter()


def run_official(g, clip, steps: int, device: str):
    import torch

    from benchmarks.official_stylegan2 import official_ops
    from styleclip.encoders.clip import official_resize
    from styleclip.losses import latent_l2

    g.requires_grad_(True)  # as upstream: nothing is frozen
    clip.model.requires_grad_(True)
    w_init = source_latent(g, device)
    w = w_init.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.1)
    times = []
    with official_ops():
        for _ in range(steps + 1):
            t = time.perf_counter()
            img = g.synthesis(w)
            tokens = clip.tokenizer([PROMPT]).to(device)  # re-encoded every step
            image_features = clip.model.encode_image(official_resize(img, clip.input_size))
            text_features = clip.model.encode_text(tokens)
            image_features = image_features / image_features.norm(dim=-1, keepdim=True)
            text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            c_loss = 1 - image_features @ text_features.t()
            loss = c_loss.sum() + 0.008 * latent_l2(w, w_init).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(_synced(device) - t)
    return times[1:], img.detach(), None, times[0]


def child(spec: dict) -> dict:
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    if spec["variant"] != "official" and not VARIANTS[spec["variant"]][2]:
        keep_freed_memory()  # as the CLI does; the official code and `freeing` keep glibc's defaults
    g, clip = build(spec["size"], spec["device"], spec.get("tiny", False))
    if spec["variant"] == "official":
        times, img, source, first = run_official(g, clip, spec["steps"], spec["device"])
    else:
        frac, bf16, _, compile_ = VARIANTS[spec["variant"]]
        times, img, source, first = run_ours(g, clip, spec["steps"], spec["device"],
                                             spec["size"] // frac if frac else None, bf16, compile_)
    torch.save({"image": img.float().cpu(), "source": None if source is None else source.float().cpu()},
               spec["image_out"])
    peak = torch.cuda.max_memory_allocated() / 2**30 if spec["device"].startswith("cuda") else vmhwm_gib()
    return {"times": times, "peak_gib": peak, "first": first}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1024")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per run (after one warm-up step)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--variants", default="official,ours,ours freeing,ours bf16,ours bf16 freeing,ours ckpt bf16,"
                    "ours compiled,ours compiled bf16")
    ap.add_argument("--tiny", action="store_true", help="small channels and the debug CLIP (for tests)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return None
    print(f"Machine: {machine_line(args.device, 'malloc per variant (see below)')}\n")
    variants = args.variants.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="styleclip-opt-bench-"))
    # compiled variants: the first round compiles from nothing, later ones hit the compile cache as a user's
    # second run would (a fresh cache per benchmark run, not one left by earlier work)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp / "inductor-cache")}
    results = {}
    for size in map(int, args.sizes.split(",")):
        for r in range(args.rounds):
            for variant in variants[r % len(variants):] + variants[:r % len(variants)]:
                spec = dict(size=size, variant=variant, steps=args.steps, device=args.device, threads=args.threads,
                            tiny=args.tiny, image_out=str(tmp / f"{size}-{variant}-{r}.pt"))
                out = subprocess.run([sys.executable, "-m", "benchmarks.optimization", "--child", json.dumps(spec)],
                                     capture_output=True, text=True, env=env, cwd=ROOT)
                if out.returncode != 0:
                    print(f"failed {spec}: {out.stderr.strip().splitlines()[-3:]}", file=sys.stderr)
                    continue
                res = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault((size, variant), []).append({**res, "round": r, "image": spec["image_out"]})
                print(f"  {size} round {r} {variant}: {median(res['times']):.2f} s/step, peak "
                      f"{res['peak_gib']:.2f} GiB ({load()})", file=sys.stderr, flush=True)
    rows = summarize(results, variants)
    print(f"Latent optimization on {args.device}: median s/step over {args.rounds} rounds x {args.steps} steps; "
          f"speed-up = median per-round ratio to `official`; peak = VmHWM of the run's process (CUDA: max "
          f"allocated), max over rounds; error vs ours = |final image - ours fp32 final| (images in about [-1, 1]); "
          f"edit = mean |ours fp32 final - source|; first step = the untimed first step of each round, in round "
          f"order (it also renders the source and embeds the text; compiled variants compile in it, from an empty "
          f"compile cache in the first round)\n")
    print("| size | variant | s / step | speed-up vs official | peak GiB | memory vs official | max error vs ours | "
          "mean error vs ours | edit (mean change) | first step s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['variant']} | {r['s_step']:.2f} | {r['speedup']} | {r['peak_gib']:.2f} | "
              f"{r['memory']} | {r['max_err']} | {r['mean_err']} | {r['edit']} | {r['first']} |")
    print(f"\nEnd: {load()}")
    return rows


def summarize(results: dict, variants: list[str]) -> list[dict]:
    import torch

    rows = []
    for size in sorted({s for s, _ in results}):
        base = {run["round"]: median(run["times"]) for run in results.get((size, "official"), [])}
        base_peak = max((run["peak_gib"] for run in results.get((size, "official"), [])), default=None)
        ref = results.get((size, "ours"))
        ref_img = torch.load(ref[0]["image"], weights_only=True) if ref else None
        for variant in variants:
            runs = results.get((size, variant))
            if not runs:
                continue
            per_round = {run["round"]: median(run["times"]) for run in runs}
            common_rounds = sorted(set(base) & set(per_round))
            speed = (f"{ratio([base[k] for k in common_rounds], [per_round[k] for k in common_rounds]):.2f}x"
                     if common_rounds else "-")
            peak = max(run["peak_gib"] for run in runs)
            row = dict(size=size, variant=variant, s_step=median(list(per_round.values())), speedup=speed,
                       peak_gib=peak, memory=f"{peak / base_peak:.2f}" if base_peak else "-",
                       max_err="-", mean_err="-", edit="-",
                       first=", ".join(f"{run['first']:.1f}" for run in sorted(runs, key=lambda run: run["round"])))
            if ref_img is not None and variant != "official":
                data = torch.load(runs[0]["image"], weights_only=True)
                diff = (data["image"] - ref_img["image"]).abs()
                row.update(max_err=f"{diff.max():.1e}", mean_err=f"{diff.mean():.1e}")
                if variant == "ours" and ref_img["source"] is not None:
                    row["edit"] = f"{(ref_img['image'] - ref_img['source']).abs().mean():.1e}"
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
