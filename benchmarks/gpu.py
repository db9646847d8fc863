"""Every engine on one device in one run (< 5 minutes on an H100/H200), with a table of ratios.

    python -m benchmarks.gpu --device cuda --out docs/benchmarks/gpu.md     # real configs: 1024 px, ViT-B/32
    python -m benchmarks.gpu --tiny                                        # CPU smoke run (tests use it)

Engines (random weights of the real architectures, so no download; cost does not depend on the weights):
generator forward (batch 1 and --batch), latent optimization (s/step, and 300 steps projected), global
directions edit, mapper edit, and exact channel relevance (the official 100-image protocol, projected from one
batched forward per relevance layer to the whole FFHQ generator). Each engine's baseline is our float32
eager run in the same process, timed interleaved with its variants (benchmarks/common.py): bfloat16 and
float16 autocast, torch.compile (CUDA by default: it needs a C++/Triton toolchain and minutes of compiling; the
optimization step compiled as `--compile` does, with CUDA graphs on CUDA),
batched relevance (pairs per forward) against one pair per forward. Targets on an H100/H200: 300 optimization
steps at 1024 < 10 s; exact FFHQ relevance (100 images) < 1 h.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from benchmarks.common import interleaved, load, machine_line, median, ratio, sync

PROMPT = "a face with purple hair"


def autocast(device: str, dtype: str):
    import torch

    kind = "cuda" if device.startswith("cuda") else "cpu"
    if dtype == "fp32":
        return torch.autocast(kind, enabled=False)
    return torch.autocast(kind, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[dtype])


@contextlib.contextmanager
def separate_blur():
    """The CPU's upsampling (transposed conv, then the depthwise FIR blur) on any device: the GPU path's baseline."""
    from styleclip.nets import ops

    saved, ops.FUSED_UPSAMPLING_DEVICES = ops.FUSED_UPSAMPLING_DEVICES, ()
    try:
        yield
    finally:
        ops.FUSED_UPSAMPLING_DEVICES = saved


def build(args):
    import torch

    from styleclip.encoders.clip import DEBUG_CLIP_CONFIG, ClipEncoder
    from styleclip.nets.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    cfg = GeneratorConfig(size=32, channel_max=32) if args.tiny else GeneratorConfig(size=args.size)
    g = Generator(cfg).eval().requires_grad_(False)
    g.w_avg.copy_(g.mean_latent(512))
    clip = ClipEncoder.from_config(DEBUG_CLIP_CONFIG) if args.tiny else ClipEncoder.from_pretrained(
        "ViT-B-32-quickgelu", None)
    return g.to(args.device), clip.to(args.device)


def row(engine, variant, times, base, unit="s", note="", scale=1.0):
    return dict(engine=engine, variant=variant, value=median(times) * scale, unit=unit,
                ratio=ratio(base, times) if base is not None else None, note=note)


def bench_generator(g, args, dtypes, compile_):
    import torch

    rows = []
    for batch in sorted({1, args.batch}):
        w = g.broadcast(g.mapping(torch.randn(batch, g.config.style_dim, device=args.device)))

        def fwd(dtype, fn=g.synthesis, separate=False):
            def run():
                with torch.no_grad(), autocast(args.device, dtype), \
                        separate_blur() if separate else contextlib.nullcontext():
                    return fn(w)
            return run

        variants = {f"{dt}": fwd(dt) for dt in dtypes}
        if args.device.startswith("cuda"):
            variants["fp32, separate blur"] = fwd("fp32", separate=True)
        note = {}
        if compile_:
            compiled = torch.compile(g.synthesis)
            t = time.perf_counter()
            for dt in ("fp32", dtypes[-1]):
                fwd(dt, compiled)()  # compiles (one graph per dtype)
            sync(args.device)
            note["compile"] = f"compile {time.perf_counter() - t:.0f} s"
            variants["compile fp32"] = fwd("fp32", compiled)
            variants[f"compile {dtypes[-1]}"] = fwd(dtypes[-1], compiled)
        ref = fwd("fp32")().float()
        err = {name: float((fn().float() - ref).abs().max()) for name, fn in variants.items()}
        times = interleaved(variants, args.rounds, args.device)
        for name in variants:
            extra = f"max abs error {err[name]:.1e}" + (f"; {note['compile']}" if name.startswith("compile") else "")
            rows.append(row(f"generator forward (batch {batch})", name, times[name], times["fp32"],
                            unit="s / image", note=extra, scale=1 / batch))
    return rows


def bench_optimization(g, clip, args, dtypes, compile_):
    from styleclip.editors.optimization import OptimizationConfig, OptimizationEditor
    from styleclip.types import Latent, Prompt

    import torch

    w = g.broadcast(g.mapping(torch.randn(1, g.config.style_dim, generator=torch.Generator().manual_seed(0)).to(
        args.device), 0.7)).detach()
    variants, stamps, notes, failed = {}, {}, {}, []
    names = [d for d in dtypes if d != "fp16"]  # fp16 needs loss scaling: not offered for optimization
    names += ["fp32, separate blur"] if args.device.startswith("cuda") else []
    # compiled as `--compile` does (CUDA: with CUDA graphs); on CUDA fp32 only, to keep the run within 5 minutes
    # (bf16 autocast was slower than fp32 there at batch 1)
    if compile_:
        names += [f"compile {d}" for d in (("fp32",) if args.device.startswith("cuda") else ("fp32", "bf16"))]
    for dt in names:
        editor = OptimizationEditor(g, clip, config=OptimizationConfig(
            steps=args.steps, id_lambda=0.0, bf16=dt.endswith("bf16"), compile=dt.startswith("compile")))

        def run(editor=editor, dt=dt):
            # the whole edit (source render, text, steps, final render) over its steps: no step syncs the host,
            # so per-step marks would time the launches, not the work
            sync(args.device)
            t0 = time.perf_counter()
            with separate_blur() if dt.endswith("separate blur") else contextlib.nullcontext():
                editor.edit(Latent(w), Prompt(PROMPT))
            sync(args.device)
            return time.perf_counter() - t0
        if dt.startswith("compile"):
            try:  # compiles in the first steps; a backend failure is a row of the table, not the end of the run
                notes[dt] = f"; compile (first edit) {run():.0f} s"
            except Exception as e:  # noqa: BLE001
                failed.append(row(f"optimization at {g.config.size} (s / step)", dt, [float("nan")], None,
                                  unit="s / step", note=f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"))
                continue
        variants[dt] = lambda run=run, dt=dt: stamps.setdefault(dt, []).append(run() / args.steps)
    interleaved(variants, args.opt_rounds, args.device, warmup=0)
    base = stamps["fp32"]
    return [row(f"optimization at {g.config.size} (s / step)", dt, stamps[dt], base, unit="s / step",
                note=f"300 steps: {median(stamps[dt]) * 300:.1f} s (projected; target < 10 s on H100/H200)"
                + notes.get(dt, "")) for dt in stamps] + failed


def bench_global_and_mapper(g, clip, args, dtypes):
    import torch
    import torch.nn.functional as F

    from styleclip import stylespace as ss
    from styleclip.editors.global_directions import GlobalDirectionsConfig, GlobalDirectionsEditor
    from styleclip.nets.mapper import LevelsMapper
    from styleclip.types import Latent, Prompt

    stats = ss.compute_stats(g, n=500)
    layers = ss.relevance_layers(g)
    n_ch = sum(g.layers[k].channels for k in layers)
    fs3 = F.normalize(torch.randn(n_ch, ss.clip_dim(clip), generator=torch.Generator().manual_seed(0)), dim=1)
    editor = GlobalDirectionsEditor(g, clip, config=GlobalDirectionsConfig(
        stats=stats, relevance=ss.Relevance(fs3.to(args.device), tuple(layers)), beta=0.0, with_source=False))
    lat = Latent(g.broadcast(ss.sample_w(g, 1)))
    prompt = Prompt(PROMPT, strength=3.0)
    editor.edit(lat, prompt)  # caches the text direction
    mapper = LevelsMapper(g.num_ws, g.config.style_dim).eval().requires_grad_(False).to(args.device)

    def global_edit(dt):
        def run():
            with torch.no_grad(), autocast(args.device, dt):
                g.synthesis_from_styles(editor.edit_styles(g.styles(lat.w_plus), prompt))
        return run

    def mapper_edit(dt):
        def run():
            with torch.no_grad(), autocast(args.device, dt):
                g.synthesis(lat.w_plus + 0.1 * mapper(lat.w_plus))
        return run

    rows = []
    for engine, make in (("global directions edit", global_edit), ("mapper edit", mapper_edit)):
        variants = {dt: make(dt) for dt in dtypes}
        times = interleaved(variants, args.rounds, args.device)
        rows += [row(engine, dt, times[dt], times["fp32"], unit="s / edit") for dt in variants]
    return rows


def bench_relevance(g, clip, args, dtypes):
    """Exact relevance: per relevance layer, one forward of `pairs` image pairs from the cached prefix."""
    import torch

    from styleclip import stylespace as ss
    from styleclip.stylespace import relevance as relevance_math

    stats = ss.compute_stats(g, n=500)
    layers = ss.relevance_layers(g)
    styles = ss.styles_from_w(g, ss.sample_w(g, args.pairs))
    images = 100
    rows, per_pair = [], {}
    configs = [("fp32", 1), ("fp32", args.pairs)] + [(dt, args.pairs) for dt in dtypes if dt != "fp32"]
    for k in layers:
        with torch.no_grad():
            prefix = g.synthesis_range([s if j < k else None for j, s in enumerate(styles)], 0, k) if k > 0 else (
                g._constant_input(args.pairs), None)

            def run(dt, batch, k=k, prefix=prefix):
                def f():
                    with torch.no_grad(), autocast(args.device, dt):
                        relevance_math._pairs_contribution(g, clip, styles, stats, k, (0, args.pairs), (0, 1), prefix, batch)
                return f
            # one channel x `pairs` images = `pairs` pairs per call
            times = interleaved({f"{dt} x{b}": run(dt, b) for dt, b in configs}, 1, args.device)
        for name, t in times.items():
            per_pair.setdefault(name, []).append((g.layers[k].channels, t[0] / args.pairs))
    base_total = None
    for name, entries in per_pair.items():
        total = sum(ch * images * t for ch, t in entries)  # seconds for the whole protocol
        if base_total is None:
            base_total = total
        rows.append(dict(engine=f"exact relevance, {sum(c for c, _ in entries)} channels x {images} images",
                         variant=name.replace(" x", ", pairs / forward "), value=total / 3600, unit="h (projected)",
                         ratio=base_total / total, note="target < 1 h on H100/H200" if name != "fp32 x1" else
                         "one pair per forward"))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--tiny", action="store_true", help="32 px generator with 32 channels, debug CLIP (CPU test)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30, help="optimization steps per timed edit")
    ap.add_argument("--opt-rounds", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=32, help="image pairs per relevance forward")
    ap.add_argument("--compile", choices=("auto", "yes", "no"), default="auto", help="auto: on CUDA")
    ap.add_argument("--engines", default="generator,optimization,edits,relevance")
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    args = ap.parse_args(argv)
    import torch

    if args.tiny:
        args.device = "cpu" if args.device == "cuda" and not torch.cuda.is_available() else args.device
        args.batch, args.rounds, args.steps, args.opt_rounds, args.pairs = 2, 1, 3, 1, 2
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here (run with --tiny for the CPU smoke run)")
    dtypes = ["fp32", "bf16"] + (["fp16"] if cuda else [])
    compile_ = args.compile == "yes" or (args.compile == "auto" and cuda)
    t_start = time.perf_counter()
    head = f"Machine: {machine_line(args.device)}"
    print(head, flush=True)
    g, clip = build(args)
    engines = args.engines.split(",")
    rows = []
    if "generator" in engines:
        rows += bench_generator(g, args, dtypes, compile_)
    if "optimization" in engines:
        rows += bench_optimization(g, clip, args, dtypes, compile_)
    if "edits" in engines:
        rows += bench_global_and_mapper(g, clip, args, dtypes)
    if "relevance" in engines:
        rows += bench_relevance(g, clip, args, dtypes)
    total = time.perf_counter() - t_start
    lines = [head, "", f"Generator size {g.config.size}{' (tiny: 32 channels, debug CLIP)' if args.tiny else ''}; "
             f"medians of {args.rounds} interleaved rounds (optimization: {args.opt_rounds} x {args.steps} steps); "
             f"ratio = speed-up against the engine's first row in the same run; total {total:.0f} s; end {load()}", "",
             "| engine | variant | value | unit | ratio vs first row | note |", "|---|---|---:|---|---:|---|"]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['variant']} | {r['value']:.4g} | {r['unit']} | "
                     f"{'-' if r['ratio'] is None else format(r['ratio'], '.2f') + 'x'} | {r['note']} |")
    text = "\n".join(lines)
    print("\n" + "\n".join(lines[2:]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return rows


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
