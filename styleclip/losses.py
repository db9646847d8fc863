"""Loss terms of the engines: tensors in, tensors out."""
from __future__ import annotations

import torch


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity per image [N] (unit embeddings [N,D] and [1,D] or [N,D]).

    Equals StyleCLIP's 1 - logits_per_image / 100 for CLIP ViT-B/32, whose logit scale is exactly 100."""
    return 1 - (image_emb * text_emb).sum(-1)


def latent_l2(w: torch.Tensor, w_source: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences per sample [N] (the optimizer's L2 term: a sum, not a norm or a mean)."""
    return (w - w_source).square().flatten(1).sum(1)


def identity_loss(emb: torch.Tensor, source_emb: torch.Tensor) -> torch.Tensor:
    """1 - <e(edited), e(original)> per sample [N]; the source embedding is detached."""
    return 1 - (emb * source_emb.detach()).sum(-1)
