"""How faithful an inversion is, and the cheapest inverter that is faithful enough (`--invert auto`).

Figures of a reconstruction against the aligned photo crop: PSNR (dB, 8-bit) and the identity net's
cosine similarity (where the model set has an identity net). Inverters from cheap to dear: e4e (one pass;
where an encoder exists), the projector (optimization), PTI (the projector's or e4e's pivot, then the
generator tuned). `auto` stops at the first that reaches the target, else keeps the best figures (PTI).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from styleclip.errors import InputError
from styleclip.types import ProgressFn

METHODS = ("auto", "e4e", "projector", "pti")


@dataclass(frozen=True)
class FidelityTarget:
    """What `auto` asks of a reconstruction: PSNR at least `psnr` dB and identity cosine at least `identity`
    (ignored without an identity net)."""

    psnr: float = 27.0
    identity: float = 0.9


@dataclass(frozen=True)
class Fidelity:
    """The figures of one inverter on one face."""

    method: str
    psnr: float
    identity: float | None
    seconds: float
    cached: bool = False

    def reaches(self, target: FidelityTarget) -> bool:
        return self.psnr >= target.psnr and (self.identity is None or self.identity >= target.identity)

    def figures(self) -> str:
        return f"PSNR {self.psnr:.2f} dB" + (f", identity {self.identity:.3f}" if self.identity is not None else "")

    def line(self) -> str:
        return f"{self.method}: {self.figures()}, {self.seconds:.1f} s" + (" (cached)" if self.cached else "")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FaceInversion:
    """The chosen inversion of one face: w_plus [1,num_ws,D], the generator to edit with (PTI-tuned or the
    base), its reconstruction img [1,3,H,W], the figures of the chosen inverter and of every one tried."""

    w_plus: torch.Tensor
    generator: torch.nn.Module
    reconstruction: torch.Tensor
    fidelity: Fidelity
    tried: list[Fidelity] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.fidelity.method

    def report(self) -> dict:
        return {"method": self.method, **self.fidelity.to_dict(), "tried": [f.to_dict() for f in self.tried]}


def psnr(img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per sample [N] of images in [-1,1] (8-bit peak: the range 2)."""
    mse = (img.float().clamp(-1, 1) - target.float().to(img.device)).square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


@torch.no_grad()
def identity_similarity(identity, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    if identity is None:
        return None
    return (identity.embed(img.float()) * identity.embed(target.float().to(img.device))).sum(-1)


def measure(method: str, recon: torch.Tensor, target: torch.Tensor, identity, seconds: float,
            cached: bool = False) -> Fidelity:
    sim = identity_similarity(identity, recon, target)
    return Fidelity(method, float(psnr(recon, target)[0]), None if sim is None else float(sim[0]), seconds, cached)


def plan(method: str, *, has_encoder: bool) -> list[str]:
    """Inverters to try, cheapest first."""
    if method not in METHODS:
        raise InputError(f"unknown inverter {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "e4e" and not has_encoder:
        raise InputError("--invert e4e needs an e4e encoder (e4e_ffhq_encode.pt: `styleclip weights download "
                         "e4e-ffhq-encode`, FFHQ only); use --invert projector, pti or auto")
    pivot = "e4e" if has_encoder else "projector"
    return {"auto": [pivot, "projector", "pti"] if has_encoder else ["projector", "pti"],
            "e4e": ["e4e"], "projector": ["projector"], "pti": [pivot, "pti"]}[method]


def invert_face(aligned, generator, *, method: str = "auto", target: FidelityTarget = FidelityTarget(),
                encoder=None, identity=None, projector=None, pti=None, perceptual=None,
                progress: ProgressFn | None = None, use_cache: bool = True) -> FaceInversion:
    """Invert an aligned face crop (PIL) with `method` (auto | e4e | projector | pti), measuring each step.

    projector: an InversionConfig; pti: a PTIConfig; perceptual: () -> (PTI's perceptual term, its name),
    called only when PTI runs (default: pti.perceptual_for the generator: LPIPS at >= 256 px, else identity)."""
    from styleclip.photo import invert as inversion, pti as pti_mod
    from styleclip.util.imaging import from_pil

    projector = projector or inversion.InversionConfig()
    pti = pti or pti_mod.PTIConfig()
    steps = plan(method, has_encoder=encoder is not None)
    cost = {"e4e": 1, "projector": projector.steps, "pti": pti.steps}
    total = sum(cost[s] for s in steps)
    done = [0]

    def stage_progress(k, n, base=None):
        if progress is not None:
            progress(min(total, done[0] + round(k / max(n, 1) * base)), total)

    img = from_pil(aligned, generator.config.size).to(generator.w_avg.device)
    tried: list[Fidelity] = []
    best: FaceInversion | None = None
    pivot = None  # the best latent so far, PTI's starting point
    for stage in steps:
        t0 = time.perf_counter()
        report = lambda k, n, c=cost[stage]: stage_progress(k, n, c)  # noqa: E731
        if stage in ("e4e", "projector"):
            result = inversion.invert_aligned(aligned, generator, config=projector,
                                              encoder=encoder if stage == "e4e" else None, identity=identity,
                                              progress=report, use_cache=use_cache)
            g, w, recon, cached = generator, result.w_plus, result.reconstruction, result.cached
        else:
            key = inversion.cache_key(aligned, generator, {"pivot": best.method})
            term, name = perceptual() if perceptual is not None else pti_mod.perceptual_for(generator, identity)
            g, cached = pti_mod.tune_cached(generator, pivot, img, pivot_key=key, config=pti,
                                            perceptual=term, perceptual_name=name,
                                            progress=report, use_cache=use_cache)
            w = pivot
            with torch.no_grad():
                recon = g.synthesis(w, noise_mode="const")
        fid = measure(stage, recon, img, identity, time.perf_counter() - t0, cached)
        tried.append(fid)
        done[0] += cost[stage]
        last = FaceInversion(w, g, recon, fid)
        if stage != "pti" and (best is None or fid.psnr > best.fidelity.psnr):
            pivot = w
        if best is None or fid.psnr > best.fidelity.psnr or method != "auto":
            best = last  # auto keeps the best figures; a named inverter its own result
        if method == "auto" and fid.reaches(target):
            best = last
            break
    if progress is not None:
        progress(total, total)
    best.tried = tried
    return best
