"""Run under torchrun by tests/test_distributed.py: sharded style statistics, exact and fast relevance, and a few
DDP mapper steps (after fitting to a teacher) on the debug models; rank 0 saves what the test compares with a single-process run."""
import sys
from pathlib import Path

import torch

from styleclip.util import distributed
from styleclip import stylespace as ss
from styleclip.training.mapper import MapperTrainer
from styleclip.factory import debug_generator, load_clip, load_identity

# the settings both sides use (the test imports these)
STATS = dict(n=3000, batch=1000)
EXACT = dict(n_images=2, layers=[3, 9], image_batch=1, channel_block=8)
FAST = dict(n_images=3, layers=[5, 9])
MAPPER = dict(steps=2, batch_size=4, num_latents=8, num_val_latents=2, val_interval=2, save_interval=2,
              image_interval=100, seed=3, distill_steps=5)
PROMPT = "a smiling face"


def models():
    return debug_generator(), load_clip("debug"), load_identity("debug")


def teacher(g):
    """A fixed W+ change for the mapper to be fitted to first (as a universal mapper's, `--init`)."""
    c = torch.randn(g.config.style_dim, generator=torch.Generator().manual_seed(7))
    return lambda w: 0.05 * c.to(w).expand_as(w)


def main(out: Path, parts: str) -> None:
    world = distributed.init_from_env("cpu")
    torch.set_num_threads(1)
    g, clip, identity = models()
    stats = ss.compute_stats(g, checkpoint=out / "stats.partial", **STATS)
    if world.is_main:
        stats.save(out / "stats.safetensors")
    if "exact" in parts:
        rel = ss.compute_relevance(g, clip, stats, checkpoint=out / "exact.partial",
                                   progress=lambda d, t: print(f"rank {world.rank}: {d}/{t}", flush=True), **EXACT)
        if world.is_main:
            rel.save(out / "exact.npy")
    if "fast" in parts:
        rel = ss.estimate_relevance(g, clip, stats, checkpoint=out / "fast.partial", **FAST)
        if world.is_main:
            rel.save(out / "fast.npy")
    if "mapper" in parts:
        from styleclip.training.mapper import MapperTrainConfig

        trainer = MapperTrainer(g, clip, PROMPT, identity=identity, config=MapperTrainConfig(**MAPPER),
                                out_dir=out / "mapper", teacher=teacher(g))
        trainer.run()
    distributed.destroy()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "exact,fast,mapper")
