"""Style space S (STYLECLIP_SPEC 0.2, 3.2-3.5): S-space math, no files. Everything reads the generator's layer
table `g.layers`.

- `stats`: the seeded w stream and per-channel statistics (StyleStats, compute_stats)
- `relevance`: channel relevance fs3 (Relevance; compute_relevance, estimate_relevance)
- `sharded`: resumable sums shared out among torchrun ranks (ShardedSums)
- `directions`: delta_t -> delta_s, beta, ridge (text_direction, delta_s, apply_direction, ...)
- `identity_cost`: how much each channel changes who the face is

Where their files are found, cached or shipped is the store's business (`styleclip.store.stylespace_files`).
"""
from styleclip.stylespace.directions import (AUTO_BETAS, apply_direction, auto_beta, channel_scores, count_kept,
                                             decorrelated_scores, delta_s, text_direction)
from styleclip.stylespace.relevance import (PERTURBATION, RELEVANCE_IMAGES, UPSTREAM_MAX_RESOLUTION, Relevance,
                                            clip_dim, compute_relevance, compute_relevance_naive,
                                            computes_when_missing, conv_layers, estimate_relevance,
                                            relevance_layers, save_rows)
from styleclip.stylespace.sharded import ShardedSums
from styleclip.stylespace.stats import (STATS_SAMPLES, STATS_SEED, STATS_TRUNCATION, StyleStats, compute_stats,
                                        sample_w, styles_from_w)

__all__ = ["AUTO_BETAS", "apply_direction", "auto_beta", "channel_scores", "count_kept", "decorrelated_scores",
           "delta_s", "text_direction", "PERTURBATION", "RELEVANCE_IMAGES", "UPSTREAM_MAX_RESOLUTION", "Relevance",
           "clip_dim", "compute_relevance", "compute_relevance_naive", "computes_when_missing", "conv_layers",
           "estimate_relevance", "relevance_layers", "save_rows", "ShardedSums", "STATS_SAMPLES", "STATS_SEED",
           "STATS_TRUNCATION", "StyleStats", "compute_stats", "sample_w", "styles_from_w"]
