"""Latent mapper: training steps/s and inference time per image, ours vs the official way, same process.

Random-weight generators of the real configs (GeneratorConfig(size=256 / 1024)) and a random ViT-B-32-quickgelu
CLIP (no download). Batch 2, Ranger, lr 0.5, no identity net (none is available offline).

Baseline ("the official way", mapper/training/coach.py): the source image G(w) rendered every step (under
no_grad, as coach.py does), the generator and CLIP not frozen (requires_grad True: their weight gradients are
computed in every backward), CLIP input through the 7x nearest upsample + average pool (`official_resize`),
raw [-1,1] values into CLIP, loss.backward() over everything.
Ours: MapperTrainer.train_step (frozen nets, mapper-only backward, no source render without identity loss,
box-filter resize).

Inference: ours MapperEditor(metrics=False).edit on one latent; baseline = the official inference loop
(no_grad: w + 0.1 * M(w), G(w_hat)); the same generator code, so the ratio is ~1 by construction.

    flock /tmp/styleclip-heavy.lock python -m benchmarks.mapper --sizes 256 1024 --steps 3 2 --threads 1

Measured on the shared 2-core dev machine (load ~5 from other jobs, so absolute times are inflated and noisy):
| size | ours step | official step | speed-up | ours / official inference per image | peak RSS ours / official |
| 256  | 11.7 s    | 36.2 s        | 3.09x    | 1.97 s / 1.95 s                       | 3.2 / 3.8 GiB            |
| 1024 | 54.6 s    | 102.0 s       | 1.87x    | 9.15 s / 12.5 s                       | 7.7 / 10.1 GiB           |
(an earlier 1024 run under heavier load gave 73.1 s / 87.2 s = 1.19x). Ours at 1024 is about one generator
forward with graph (~2 x 9 s) + the input-only backward (~1.5x the forward: memory-bound elementwise work at
512-1024 px) + CLIP (~3 s); the resize costs 0.2 s (official 7x path: 4.1 s).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from styleclip.encoders.clip import ClipEncoder, official_resize
from styleclip.editors.mapper import MapperConfig, MapperEditor
from styleclip.training.mapper import MapperTrainConfig, MapperTrainer, sample_latents
from styleclip.nets.mapper import LevelsMapper
from styleclip.nets.stylegan2 import Generator, GeneratorConfig
from styleclip.training.ranger import Ranger

PROMPT = "a person with a mohawk"


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def build(size: int):
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(size=size))
    g.w_avg.copy_(g.mean_latent(512))
    return g.eval().requires_grad_(False)


def time_steps(fn, steps: int) -> list[float]:
    fn()  # warm-up (allocator, caches)
    out = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


class OfficialTrainStep:
    """coach.py's training step, restated on our generator and CLIP."""

    def __init__(self, g, clip, latents, text_emb):
        self.g, self.clip, self.latents, self.text_emb = g, clip, latents, text_emb
        torch.manual_seed(1)
        self.mapper = LevelsMapper(g.num_ws, g.config.style_dim)
        self.opt = Ranger(self.mapper.parameters(), lr=0.5)
        self.i = 0

    def __call__(self):
        w = self.latents[self.i % len(self.latents):][:2]
        self.i += 2
        self.opt.zero_grad()
        with torch.no_grad():
            x = self.g.synthesis(w)  # noqa: F841 (rendered every step for ID loss / logging)
        w_hat = w + 0.1 * self.mapper(w)
        x_hat = self.g.synthesis(w_hat)
        image_emb = F.normalize(self.clip.model.encode_image(official_resize(x_hat)), dim=-1)
        loss_clip = (1 - image_emb @ self.text_emb.t()).mean()
        loss = loss_clip + 0.8 * F.mse_loss(w_hat, w)
        loss.backward()
        self.opt.step()


def bench_size(size: int, steps: int, clip, baseline: bool, infer_n: int) -> dict:
    g = build(size)
    latents = sample_latents(g, 16, truncation=0.7, seed=0)
    res = {"size": size}
    # ---- ours
    tr = MapperTrainer(g, clip, PROMPT, config=MapperTrainConfig(num_val_latents=0), latents=latents)
    res["ours_step"] = statistics.median(time_steps(tr.train_step, steps))
    res["ours_peak"] = peak_gib()
    ed = MapperEditor(g, clip, config=MapperConfig(mapper=tr.mapper, metrics=False, batch_size=1))
    from styleclip.types import Latent
    res["ours_infer"] = statistics.median(time_steps(lambda: ed.edit(Latent(latents[:1])), infer_n))
    # ---- official way
    with torch.no_grad():
        mapper = tr.mapper

        def official_infer():
            w = latents[:1]
            w_hat = w + 0.1 * mapper(w)
            return g.synthesis(w_hat)

        res["base_infer"] = statistics.median(time_steps(official_infer, infer_n))
    if baseline:
        g.requires_grad_(True)
        clip.model.requires_grad_(True)
        clip_official = ClipEncoder(clip.model, clip.tokenizer, official_input=True)
        clip_official.model.requires_grad_(True)  # ClipEncoder freezes on construction; the official CLIP is not
        step = OfficialTrainStep(g, clip_official, latents, clip.encode_text(PROMPT))
        res["base_step"] = statistics.median(time_steps(step, steps))
        res["base_peak"] = peak_gib()
        g.requires_grad_(False)
        clip.model.requires_grad_(False)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--steps", type=int, nargs="+", default=[5], help="timed steps per size (after 1 warm-up)")
    ap.add_argument("--infer", type=int, default=3, help="timed inference calls per size")
    ap.add_argument("--no-baseline-at", type=int, nargs="*", default=[], help="sizes to time ours only")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 avoids spin-waiting on a busy machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps + [args.steps[-1]] * (len(args.sizes) - len(args.steps))
    clip = ClipEncoder.from_pretrained("ViT-B-32-quickgelu", None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; batch 2, Ranger; medians")
    rows = []
    for size, n in zip(args.sizes, steps):
        r = bench_size(size, n, clip, size not in args.no_baseline_at, args.infer)
        rows.append(r)
        print(r, flush=True)
    print()
    print("| size | ours step (s) | official step (s) | ours steps/s | official steps/s | speed-up | "
          "ours infer (s/img) | official infer (s/img) | peak RSS after ours / after official (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, o = r.get("base_step"), r["ours_step"]
        base = (f"{b:.2f}", f"{1 / b:.3f}", f"{b / o:.2f}x", f"{r['base_peak']:.1f}") if b else ("skipped", "-", "-", "-")
        print(f"| {r['size']} | {o:.2f} | {base[0]} | {1 / o:.3f} | {base[1]} | {base[2]} | "
              f"{r['ours_infer']:.3f} | {r['base_infer']:.3f} | {r['ours_peak']:.1f} / {base[3]} |")

if __name__ == "__main__":
    main()
