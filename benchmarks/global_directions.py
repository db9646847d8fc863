"""Global directions: edit latency, text-direction time, and channel-relevance throughput.

Random-weight generators of the real configs (256: channel_multiplier 2; 1024: config-f) and a random
ViT-B-32-quickgelu (open_clip, pretrained=None), so no weights are needed; cost does not depend on weights.

    python benchmarks/global_directions.py --part small    # 256 px parts + estimator agreement (debug nets)
    flock /tmp/styleclip-heavy.lock python benchmarks/global_directions.py --part large   # 1024 px parts

Relevance throughput is reported in channels per second, where one channel = `images` (100) image pairs,
from timings of a few forwards per layer (see `relevance_rates`), and projected to a full FFHQ run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from styleclip import stylespace as ss
from styleclip.nets.stylegan2 import Generator, GeneratorConfig

OFFICIAL_EDIT_1024_S = 2.15  # official global_torch edit at 1024 on this machine (issue 6)
OFFICIAL_PAIR_1024_S = 4.4  # official SingleChannel: one image pair at 1024 on this machine (issue 6)
OFFICIAL_CHANNEL_256_S = 8 * 86400 / 5376  # official at 256: about 8 days for 5376 channels (issue 6)
IMAGES = 100


def median_time(fn, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def random_generator(size: int) -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = Generator(GeneratorConfig(size=size, channel_multiplier=2))
    g.w_avg.copy_(g.mean_latent(256))
    return g.eval().requires_grad_(False)


def random_clip():
    from styleclip.clip_model import ClipEncoder

    return ClipEncoder.from_pretrained("ViT-B-32-quickgelu", pretrained=None)


def random_relevance(g, d: int) -> ss.Relevance:
    layers = ss.relevance_layers(g)
    n = sum(g.layers[k].channels for k in layers)
    rows = F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(0)), dim=1)
    return ss.Relevance(rows, tuple(layers))


def edit_latency(g, clip, label: str) -> dict:
    from styleclip.editors.global_directions import GlobalDirectionsConfig, GlobalDirectionsEditor
    from styleclip.types import Latent, Prompt

    stats = ss.compute_stats(g, n=2000)
    ed = GlobalDirectionsEditor(g, clip, config=GlobalDirectionsConfig(
        stats=stats, relevance=random_relevance(g, ss.clip_dim(clip)), beta=0.0, with_source=False))
    lat = Latent(g.broadcast(ss.sample_w(g, 1)))
    clip._text_cache.clear()
    t_text_cold = median_time(lambda: ed.text_direction("a face", "a smiling face"), reps=1)  # 2 x 79 templates
    t_text_target = median_time(lambda: ed.text_direction("a face", "a face with blue eyes"), reps=1)  # 79
    t_text_cached = median_time(lambda: ed.text_direction("a face", "a smiling face"))
    ed.edit(lat, Prompt("a smiling face", strength=4.1))  # warm-up; caches the direction
    t_edit = median_time(lambda: ed.edit(lat, Prompt("a smiling face", strength=4.1)))
    t_synth = median_time(lambda: g.synthesis(lat.w_plus))
    prompt = Prompt("a smiling face", strength=4.1)
    t_core = median_time(lambda: g.synthesis_from_styles(ed.edit_styles(g.styles(lat.w_plus), prompt)))
    with torch.no_grad():
        t_dir = median_time(lambda: ss.delta_s(g, ed.relevance, ed.stats,
                                               ss.text_direction(clip, "a face", "a smiling face"), 0.15))
    row = {"size": label, "text_cold_2x79": t_text_cold, "text_target_79": t_text_target,
           "text_cached": t_text_cached, "delta_s": t_dir, "edit": t_edit, "synthesis": t_synth,
           "core": t_core}
    return row


def relevance_rates(g, clip, *, pairs: int = 4, cotangents: int = 32) -> dict:
    """Seconds per image pair of the naive and batched exact protocol (per evaluated layer), and of the fast
    estimator per image (its 512 reverse passes timed on `cotangents` of them and scaled)."""
    stats = ss.compute_stats(g, n=2000)
    layers = ss.relevance_layers(g)
    styles = ss.styles_from_w(g, ss.sample_w(g, pairs))
    # naive: two full syntheses + CLIP per pair, batch 1
    def naive():
        with torch.no_grad():
            for i in range(2):
                s = [t[i:i + 1].clone() for t in styles]
                clip.encode_image(g.synthesis_from_styles(s))
    t_naive_pair = median_time(naive, reps=1)  # one pair = the two images
    # batched/reused: per layer, the prefix once per image batch and `pairs` pairs per forward
    per_layer = {}
    for k in layers:
        prefix = g.synthesis_range([s if j < k else None for j, s in enumerate(styles)], 0, k) if k > 0 else (
            g.input.input.expand(pairs, -1, -1, -1), None)
        with torch.no_grad():
            t = median_time(lambda: ss._pairs_contribution(g, clip, styles, stats, k, (0, pairs), (0, 1), prefix,
                                                           pairs), reps=1)
        per_layer[k] = t / pairs
    n_ch = sum(g.layers[k].channels for k in layers)
    t_batched_pair = sum(per_layer[k] * g.layers[k].channels for k in layers) / n_ch  # channel-weighted
    # fast estimator: one forward to the proxy + `cotangents` of the D reverse passes
    d = ss.clip_dim(clip)
    stop = next(l.index + 1 for l in g.layers if l.kind == "torgb" and l.resolution >= 128)
    one = [s[:1] for s in styles]
    t0 = time.perf_counter()
    ss._jacobian_columns(g, clip, one, layers, stop, cotangents, cotangents)  # D=cotangents: first rows only
    t_part = time.perf_counter() - t0
    t_fwd = median_time(lambda: clip.encode_image(g.synthesis_range(one, 0, stop)[1]), reps=1)
    t_fast_image = t_fwd + (t_part - t_fwd) * d / cotangents
    return {"naive_pair": t_naive_pair, "batched_pair": t_batched_pair, "per_layer": per_layer,
            "fast_image": t_fast_image, "n_channels": n_ch}


def agreement(n_images: int = 8, directions: int = 200, k: int = 20, model: str = "debug") -> dict:
    """Exact protocol vs fast estimator on the same images: `debug` nets (208 channels), or the trained
    `toy-faces` model (its shipped exact relevance is reused when it was computed over `n_images`)."""
    from styleclip.factory import load_clip, load_generator

    g, clip = load_generator(model), load_clip(model)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: thread spinning costs more than it gives on a shared machine
    shipped = ss.shipped_relevance(g, clip)
    stats = ss.load_or_compute_stats(g) if shipped else ss.compute_stats(g, n=10_000)
    t = time.perf_counter()
    exact = ss.Relevance.load(shipped, g) if shipped else None
    if exact is None or exact.meta.get("n_images") != n_images:
        exact = ss.compute_relevance(g, clip, stats, n_images=n_images)
        t_exact = time.perf_counter() - t
    else:
        t_exact = float("nan")  # not timed: loaded
    t = time.perf_counter()
    fast = ss.estimate_relevance(g, clip, stats, n_images=n_images)
    t_fast = time.perf_counter() - t
    torch.set_num_threads(threads)
    cos = (exact.fs3 * fast.fs3).sum(1)
    dirs = F.normalize(torch.randn(directions, exact.fs3.shape[1], generator=torch.Generator().manual_seed(1)), dim=1)
    overlaps = []
    for dt in dirs:
        a = set((exact.fs3 @ dt).abs().topk(k).indices.tolist())
        b = set((fast.fs3 @ dt).abs().topk(k).indices.tolist())
        overlaps.append(len(a & b) / k)
    return {"row_cos_mean": float(cos.mean()), "row_cos_min": float(cos.min()),
            "topk_overlap_mean": statistics.mean(overlaps), "topk_overlap_p10": sorted(overlaps)[len(overlaps) // 10],
            "t_exact": t_exact, "t_fast": t_fast, "channels": exact.fs3.shape[0], "images": n_images}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["small", "large", "all"], default="small")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--agreement-model", default="debug", help="debug or toy-faces (trained nets)")
    ap.add_argument("--agreement-images", type=int, default=8)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    from benchmarks.edit_quality import machine

    m = machine()
    print(f"machine: {m['cpu']}, {m['cores']} cores, load average {m['load']}; torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; {m['date']}")
    clip = random_clip()
    if args.part in ("small", "all"):
        ag = agreement(args.agreement_images, model=args.agreement_model)
        print(f"\nfast vs exact relevance ({args.agreement_model}, {ag['channels']} channels, {ag['images']} images): "
              f"row cosine mean {ag['row_cos_mean']:.3f} (min {ag['row_cos_min']:.3f}); top-20 overlap over 200 "
              f"random directions: mean {ag['topk_overlap_mean']:.3f}, 10th percentile {ag['topk_overlap_p10']:.2f}; "
              f"time exact {ag['t_exact']:.1f}s, fast {ag['t_fast']:.1f}s ({ag['t_exact'] / ag['t_fast']:.1f}x)")
        g = random_generator(256)
        r = edit_latency(g, clip, "256")
        print("\nsize | text 2x79 cold | text 79 (neutral cached) | text cached | delta_s | edit | synthesis")
        print(f"{r['size']} | {r['text_cold_2x79']:.3f}s | {r['text_target_79']:.3f}s | {r['text_cached'] * 1e3:.2f}ms"
              f" | {r['delta_s'] * 1e3:.1f}ms | {r['edit']:.3f}s | {r['synthesis']:.3f}s")
        rr = relevance_rates(g, clip)
        naive_ch = 1 / (rr["naive_pair"] * IMAGES)
        batched_ch = 1 / (rr["batched_pair"] * IMAGES)
        fast_ch = 1 / (rr["fast_image"] * IMAGES / rr["n_channels"])
        official_ch = 1 / (OFFICIAL_PAIR_1024_S * IMAGES)
        official_256_ch = 1 / OFFICIAL_CHANNEL_256_S
        print(f"\nrelevance at 256 ({rr['n_channels']} channels, {IMAGES} images per channel):")
        print("method | s per pair | channels/s | vs naive | vs official@256 (129 s/channel) | "
              "vs official@1024 (441 s/channel)")
        print(f"naive (full synthesis per pair, batch 1) | {rr['naive_pair']:.3f} | {naive_ch:.2e} | 1.0x | "
              f"{naive_ch / official_256_ch:.1f}x | {naive_ch / official_ch:.1f}x")
        print(f"batched + reused prefix | {rr['batched_pair']:.3f} | {batched_ch:.2e} | {batched_ch / naive_ch:.1f}x | "
              f"{batched_ch / official_256_ch:.1f}x | {batched_ch / official_ch:.1f}x")
        print(f"fast estimator (128 px proxy, {rr['fast_image']:.1f} s per image for all channels) | - | {fast_ch:.2e} |"
              f" {fast_ch / naive_ch:.1f}x | {fast_ch / official_256_ch:.1f}x | {fast_ch / official_ch:.1f}x")
        print("per-layer s/pair (batched):", {k: round(v, 3) for k, v in rr["per_layer"].items()})
        print(f"FFHQ 1024 projection, fast estimator (cost independent of output size, proxy 128 px): "
              f"{rr['fast_image'] * IMAGES / 3600:.2f} h on this machine")
    if args.part in ("large", "all"):
        g = random_generator(1024)
        r = edit_latency(g, clip, "1024")
        print("\nsize | text 2x79 cold | text 79 (neutral cached) | text cached | delta_s | edit (+CLIP metric) | "
              "edit core (cached direction + one synthesis) | synthesis | core vs official 2.15 s")
        print(f"{r['size']} | {r['text_cold_2x79']:.3f}s | {r['text_target_79']:.3f}s | {r['text_cached'] * 1e3:.2f}ms"
              f" | {r['delta_s'] * 1e3:.1f}ms | {r['edit']:.3f}s | {r['core']:.3f}s | {r['synthesis']:.3f}s | "
              f"{OFFICIAL_EDIT_1024_S / r['core']:.2f}x")
        stats = ss.compute_stats(g, n=1000)
        styles = ss.styles_from_w(g, ss.sample_w(g, 2))
        pair = median_time(lambda: ss._pairs_contribution(
            g, clip, styles, stats, 14, (0, 1), (0, 1), g.synthesis_range(
                [s if j < 14 else None for j, s in enumerate(styles)], 0, 14), 1), reps=1)
        print(f"exact pair at 1024, layer 14 (128 px up-conv): {pair:.2f}s (official {OFFICIAL_PAIR_1024_S}s/pair)")


if __name__ == "__main__":
    main()
