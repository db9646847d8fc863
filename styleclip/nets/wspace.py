"""W and W+ helpers shared by the generators (StyleGAN2 and StyleGAN3): truncation, broadcasting, the mean w.

A generator using them has `mapping(z)`, `w_avg` [style_dim], `num_ws`, `config.style_dim` and its mapping MLP as `style`.
"""
from __future__ import annotations

import torch


class WSpace:
    """Mixin: mapping_plus / truncate / broadcast / mean_latent for a generator's W space."""

    def mapping_plus(self, z: torch.Tensor, truncation_psi: float = 1.0,
                     truncation_cutoff: int | None = None) -> torch.Tensor:
        """z -> w_plus [N,num_ws,style_dim]; with a cutoff only the first rows are truncated (NVIDIA style)."""
        return self.truncate(self.broadcast(self.mapping(z)), truncation_psi, truncation_cutoff)

    def truncate(self, w: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """Interpolate w ([N,D] or [N,num_ws,D]) toward w_avg; `cutoff` limits it to the first W+ rows."""
        if psi == 1.0:
            return w
        avg = self.w_avg.to(w.dtype)
        if cutoff is None or w.ndim == 2:
            return avg + psi * (w - avg)
        rows = torch.arange(w.shape[1], device=w.device) < cutoff
        return torch.where(rows.view(1, -1, 1), avg + psi * (w - avg), w)

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w [N,D] -> w_plus [N,num_ws,D] with every row equal."""
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, *, seed: int = 0) -> torch.Tensor:
        """Average of mapping(z) over n samples drawn from a seeded generator (for checkpoints without w_avg)."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.config.style_dim, generator=g).to(self.w_avg.device)
        return self.style(z).mean(0)
