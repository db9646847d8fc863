"""Pivotal tuning (PTI, Roich et al. 2021): fine-tune a copy of the generator so that the pivot latent
(from e4e or the projector) reproduces the photo, keeping the pivot fixed.

Loss per step: l2_lambda * MSE(G_t(w_p), x) + a perceptual term, plus PTI's locality regulariser: a latent
w_r = w_p + alpha (w_z - w_p) / ||w_z - w_p|| toward a random sample w_z = mapping(z) must render as the
original generator renders it (MSE, and the perceptual term where there is one), weight locality_lambda.
The perceptual term is LPIPS (the `lpips` package, VGG) on FFHQ; the toy and debug models have no LPIPS
weights, so there it is the identity net's 1 - cos (pixel + identity loss). PTI's alpha is a fixed 30 in
FFHQ's W; here it is `locality_radius` times the generator's W spread, so it scales to any generator.

Only the synthesis network is tuned (the mapping stays), and tuned generators are cached per photo as
float16 deltas against the base weights under the user cache (`<cache>/pti`, store.cache), never in
the package.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from styleclip.store import cache
from styleclip.errors import WeightsMissingError
from styleclip.losses import identity_loss
from styleclip.types import ProgressFn

LPIPS_BACKBONE = "vgg16-397923af.pth"  # what lpips.LPIPS(net='vgg') asks torchvision for


@dataclass(frozen=True)
class PTIConfig:
    """PTI's settings (its defaults: 350 steps at lr 3e-4, l2 and LPIPS weight 1, locality weights 0.1)."""

    steps: int = 350
    lr: float = 3e-4
    l2_lambda: float = 1.0
    perceptual_lambda: float = 1.0
    locality_lambda: float = 0.1
    locality_every: int = 1  # steps between locality terms (0: off)
    locality_radius: float = 0.5  # alpha in units of the W spread (w_std)
    tune_styles: bool = True  # False: the style affines stay (S space unchanged; PTI tunes them)
    cosine: bool = False  # cosine decay of lr to 0 over the steps (not in PTI; lets short runs use a higher lr)
    warmup: int = 0  # steps of linear lr ramp from lr/warmup (not in PTI): Adam's first steps move every weight by
    # ~lr whatever its gradient, which at the toy model's lr first wrecks the pivot's image (25 steps at 1e-3 without
    # it: 2-4 dB below the pivot on hard photos; docs/photo-editing.md)
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"PTI steps must be >= 1, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"PTI lr must be > 0, got {self.lr}")
        if self.warmup < 0:
            raise ValueError(f"PTI warmup must be >= 0, got {self.warmup}")


def tunable(name: str, *, styles: bool = True) -> bool:
    """Synthesis weights are tuned; the mapping network ('style.*') is not, nor with styles=False the
    style affines ('*.modulation.*', W+ -> S)."""
    return not name.startswith("style.") and (styles or ".modulation." not in name)


def tune(generator, w_pivot: torch.Tensor, target: torch.Tensor, *, config: PTIConfig = PTIConfig(),
         perceptual=None, progress: ProgressFn | None = None):
    """A tuned copy of `generator` for which synthesis(w_pivot) ~ target img [N,3,H,W] in [-1,1].

    `perceptual(img, target) -> [N]`: LPIPS (`lpips_loss`) or an identity term (`identity_term`); None: pixels
    only. Returns (tuned generator, frozen; losses per step)."""
    from styleclip.photo.invert import w_spread

    device = generator.w_avg.device
    target = target.to(device=device, dtype=torch.float32)
    w_pivot = w_pivot.detach().to(device=device, dtype=torch.float32)
    tuned = copy.deepcopy(generator).train(False)
    params = [p for n, p in tuned.named_parameters() if tunable(n, styles=config.tune_styles)]
    tuned.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=config.lr)
    rng = torch.Generator().manual_seed(config.seed)
    radius = config.locality_radius * w_spread(generator, seed=config.seed) if config.locality_every else 0.0
    losses = []
    for step in range(config.steps):
        if config.cosine or config.warmup:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(config, step)
        img = tuned.synthesis(w_pivot, noise_mode="const")
        loss = config.l2_lambda * F.mse_loss(img, target, reduction="none").flatten(1).mean(1)
        if perceptual is not None and config.perceptual_lambda > 0:
            loss = loss + config.perceptual_lambda * perceptual(img, target)
        loss = loss.mean()
        if config.locality_every and config.locality_lambda > 0 and step % config.locality_every == 0:
            loss = loss + config.locality_lambda * _locality(generator, tuned, w_pivot, radius, rng, perceptual)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, config.steps)
    return tuned.requires_grad_(False).eval(), losses


def lr_at(config: PTIConfig, step: int) -> float:
    """The learning rate of step `step` (0-based): config.lr, ramped up linearly over the first `warmup` steps
    and, with `cosine`, decayed to 0 over all steps."""
    lr = config.lr * (0.5 * (1 + math.cos(math.pi * step / config.steps)) if config.cosine else 1.0)
    ramp = min(config.warmup, config.steps)  # a short run (--pti-steps) still reaches lr
    return lr * min(1.0, (step + 1) / ramp) if ramp else lr


def _locality(base, tuned, w_pivot, radius: float, rng: torch.Generator, perceptual) -> torch.Tensor:
    z = torch.randn(w_pivot.shape[0], base.config.style_dim, generator=rng).to(w_pivot.device)
    with torch.no_grad():
        w_z = base.broadcast(base.mapping(z))
        step = w_z - w_pivot
        w_r = w_pivot + radius * step / step.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        want = base.synthesis(w_r, noise_mode="const")
    got = tuned.synthesis(w_r, noise_mode="const")
    loss = F.mse_loss(got, want, reduction="none").flatten(1).mean(1)
    if perceptual is not None:
        loss = loss + perceptual(got, want)
    return loss.mean()


# ---- perceptual terms ---------------------------------------------------------------------------------
def identity_term(identity):
    """Perceptual term of the toy and debug models: 1 - cos of identity embeddings, per sample [N]."""
    def term(img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            want = identity.embed(target)
        return identity_loss(identity.embed(img), want)

    return term


def perceptual_for(generator, identity=None):
    """(term, name): LPIPS for photo-sized generators (>= 256 px, e.g. FFHQ), else the identity term (pixel +
    identity loss, the toy and debug models), else none."""
    if generator.config.size >= 256:
        return lpips_loss(device=generator.w_avg.device), "lpips-vgg"
    if identity is not None:
        return identity_term(identity), "identity"
    return None, "none"


def lpips_loss(*, device: str | torch.device = "cpu"):
    """LPIPS (VGG) from the `lpips` package, per sample [N], for images in [-1,1]. Its VGG backbone comes
    from torchvision's cache; nothing is downloaded here. WeightsMissingError names what is missing."""
    try:
        import lpips
    except ImportError:
        raise WeightsMissingError("PTI on FFHQ needs LPIPS: pip install lpips (and torchvision's VGG16 weights "
                                  f"{LPIPS_BACKBONE} in {Path(torch.hub.get_dir()) / 'checkpoints'})") from None
    backbone = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE
    if not backbone.is_file():
        raise WeightsMissingError(f"LPIPS needs torchvision's VGG16 weights {backbone} "
                                  f"(https://download.pytorch.org/models/{LPIPS_BACKBONE}); put the file there")
    net = lpips.LPIPS(net="vgg", verbose=False).to(device).eval().requires_grad_(False)
    return lambda img, target: net(img, target, normalize=False).flatten(1).mean(1)


# ---- deltas and the cache ------------------------------------------------------------------------------
def delta(base, tuned) -> dict[str, torch.Tensor]:
    """tuned - base for every tuned tensor that changed, as float16 (half the size of a float32 copy)."""
    ref = base.state_dict()
    out = {}
    for name, t in tuned.state_dict().items():
        if tunable(name) and t.is_floating_point() and not torch.equal(t, ref[name]):
            out[name] = (t.float() - ref[name].float()).half().cpu().contiguous()
    return out


def apply_delta(base, deltas: dict[str, torch.Tensor]):
    """A frozen copy of `base` with the deltas added (a KeyError-free check first: unknown names refused)."""
    state = base.state_dict()
    unknown = sorted(set(deltas) - set(state))
    if unknown:
        raise ValueError(f"delta names unknown to this generator: {unknown[:5]}")
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        params = dict(tuned.named_parameters())
        params.update(dict(tuned.named_buffers()))
        for name, d in deltas.items():
            params[name].add_(d.to(params[name]))
    return tuned.requires_grad_(False).eval()


def cache_path(key: str) -> Path:
    return cache.cache_path("pti", key, suffix=".safetensors")


def cache_key(pivot_key: str, w_pivot: torch.Tensor, config: PTIConfig, perceptual_name: str) -> str:
    h = hashlib.sha256(pivot_key.encode())
    h.update(w_pivot.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(repr((dataclasses.asdict(config), perceptual_name)).encode())
    return h.hexdigest()


def save_delta(path: Path, deltas: dict[str, torch.Tensor]) -> None:
    """Write atomically (a partial file is never left under the final name); a read-only cache is skipped."""
    from safetensors.torch import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(deltas, str(tmp))
        tmp.replace(path)
    except OSError:
        pass


def load_delta(path: Path) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file

    try:
        return load_file(str(path)) if path.is_file() else None
    except Exception:  # a broken entry: tune again
        path.unlink(missing_ok=True)
        return None


def tune_cached(generator, w_pivot, target, *, pivot_key: str, config: PTIConfig = PTIConfig(), perceptual=None,
                perceptual_name: str = "none", progress: ProgressFn | None = None, use_cache: bool = True):
    """`tune`, or the cached delta for this photo, pivot and settings. Returns (tuned, cached: bool)."""
    path = cache_path(cache_key(pivot_key, w_pivot, config, perceptual_name)) if use_cache else None
    if path is not None:
        found = load_delta(path)
        if found is not None:
            if progress is not None:
                progress(1, 1)
            return apply_delta(generator, found), True
    tuned, _ = tune(generator, w_pivot, target, config=config, perceptual=perceptual, progress=progress)
    if path is not None:
        save_delta(path, delta(generator, tuned))
    return tuned, False


def with_generator(editor, generator):
    """A shallow copy of an engine that renders with `generator` (e.g. a PTI-tuned one). Directions,
    statistics and mappers stay those found for the base generator, as PTI edits with the base's latents."""
    other = copy.copy(editor)
    other.generator = generator
    return other
