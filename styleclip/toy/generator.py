"""The toy-faces generator: our StyleGAN2 `Generator`, trained as a decoder of the render parameters.

Design. z ~ N(0, I) *is* the face: the mapping network's PixelNorm gives z_hat = z / rms(z), and the first
coordinates of z_hat, pushed through the normal CDF to u in (0,1), choose the renderer's parameters (a
uniform range for continuous identity factors, a bucket for categorical ones, u < 0.3 for a beard: the
distributions of `sample_identity` / `sample_attributes`). The mapping network is constructed to output the
code of z in W (`construct_mapping`) and the synthesis is trained to reproduce `render(params(z))` from it, so
`synthesis(mapping_plus(z))` with z ~ N(0, I) samples the render distribution, W/W+/S are the usual StyleGAN2
spaces, and training is plain regression (stable and cheap on 2 cores, unlike GAN training from scratch, which
gave colour noise after 10 minutes in a probe). The unused z coordinates carry no information.

Each code feature is a W axis and each style channel reads one render factor (`style_masks`), so S is
disentangled by construction, the property of GAN-trained StyleGAN2 that global directions rely on.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from styleclip.nets.stylegan2 import Generator
from styleclip.toy import data as D
from styleclip.toy.render import (BACKGROUNDS, EYE_COLOURS, GLASSES, EXPRESSIONS, HAIR_COLOURS, HAIR_STYLES, SKIN_TONES, Attributes, Identity, render)

# (field, kind, spec) in z order: ("u", (lo, hi)) uniform, ("c", values) categorical, ("b", p) Bernoulli
IDENTITY_CODE = (
    ("face_width", "u", (0.22, 0.29)), ("face_height", "u", (0.28, 0.34)), ("skin", "c", tuple(range(len(SKIN_TONES)))),
    ("eye_colour", "c", tuple(EYE_COLOURS)), ("eye_spacing", "u", (0.085, 0.12)), ("eye_size", "u", (0.035, 0.05)),
    ("nose_length", "u", (0.05, 0.09)), ("nose_width", "u", (0.025, 0.045)), ("mouth_width", "u", (0.07, 0.11)),
)
ATTRIBUTE_CODE = (
    ("hair_style", "c", HAIR_STYLES), ("hair_colour", "c", tuple(HAIR_COLOURS)), ("expression", "c", EXPRESSIONS),
    ("glasses", "c", GLASSES), ("beard", "b", 0.3), ("background", "c", tuple(BACKGROUNDS)),
)
CODE_DIMS = len(IDENTITY_CODE) + len(ATTRIBUTE_CODE)  # 15 coordinates of z are used

GENERATOR_CONFIG = {"size": 64, "style_dim": 128, "n_mlp": 4, "channel_multiplier": 1, "channel_base": 2048,
                    "channel_max": 128, "lr_mlp": 1.0}  # channels 128 at 4-16 px, 64 at 32 px, 32 at 64 px
TINY_GENERATOR_CONFIG = {"size": 16, "style_dim": 128, "n_mlp": 3, "channel_multiplier": 1, "channel_base": 128,
                         "channel_max": 16, "lr_mlp": 1.0}


def _decode(u: float, kind: str, spec):
    if kind == "u":
        return spec[0] + u * (spec[1] - spec[0])
    if kind == "c":
        return spec[min(int(u * len(spec)), len(spec) - 1)]
    return bool(u < spec)


def _u(z: torch.Tensor) -> torch.Tensor:
    """u in (0,1) [N, CODE_DIMS]: the normal CDF of the first coordinates of z / rms(z) (what the mapping
    network sees after its PixelNorm)."""
    if z.ndim != 2 or z.shape[1] < CODE_DIMS:
        raise ValueError(f"z must be [N, >= {CODE_DIMS}], got {list(z.shape)}")
    z_hat = z.double() * torch.rsqrt(z.double().pow(2).mean(1, keepdim=True) + 1e-8)
    return 0.5 * (1 + torch.erf(z_hat[:, :CODE_DIMS] / math.sqrt(2)))


def _params(u: torch.Tensor) -> list[tuple[Identity, Attributes]]:
    out = []
    for row in u.tolist():
        idn = {f: _decode(row[i], k, s) for i, (f, k, s) in enumerate(IDENTITY_CODE)}
        off = len(IDENTITY_CODE)
        att = {f: _decode(row[off + i], k, s) for i, (f, k, s) in enumerate(ATTRIBUTE_CODE)}
        out.append((Identity(**idn), Attributes(**att)))
    return out


def params_from_z(z: torch.Tensor) -> list[tuple[Identity, Attributes]]:
    """The render parameters each z [N, style_dim] stands for (a function of z / rms(z))."""
    return _params(_u(z))


CODE = IDENTITY_CODE + ATTRIBUTE_CODE
FEATURES = sum(len(s) if k == "c" else 1 for _, k, s in CODE)  # one-hot per categorical factor: 43


def code(z: torch.Tensor, psi: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, FEATURES], u_render [N, CODE_DIMS]) of z: continuous factors as centred unit-variance
    scalars, categorical ones one-hot (centred), the beard as a centred bit; everything scaled by `psi` [N]
    (truncation: continuous factors move toward their mean, categories stay). `_params(u_render)` are the
    render parameters of that (possibly truncated) code."""
    u = _u(z)
    psi = torch.ones(len(z), dtype=torch.float64) if psi is None else psi.double()
    feats, u_render = [], u.clone()
    for i, (_, kind, spec) in enumerate(CODE):
        if kind == "u":
            u_render[:, i] = 0.5 + psi * (u[:, i] - 0.5)
            feats.append(((u[:, i] - 0.5) * math.sqrt(12) * psi)[:, None])
        elif kind == "c":
            k = len(spec)
            onehot = F.one_hot((u[:, i] * k).long().clamp(max=k - 1), k).double()
            feats.append((onehot - 1 / k) * math.sqrt(k) * psi[:, None])
        else:
            bit = (u[:, i] < spec).double()
            feats.append(((bit - spec) / math.sqrt(spec * (1 - spec)) * psi)[:, None])
    return torch.cat(feats, 1).float(), u_render


def code_embedding(style_dim: int, seed: int = 12345) -> torch.Tensor:
    """Fixed orthonormal columns Q [style_dim, FEATURES]: the W a code stands for is w = Q f."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(style_dim, FEATURES, generator=g, dtype=torch.float64))
    return q.float()


def factor_embedding(style_dim: int) -> torch.Tensor:
    """Axis-aligned Q [style_dim, FEATURES]: code feature j is W coordinate j (the rest of W is unused)."""
    if style_dim < FEATURES:
        raise ValueError(f"style_dim must be >= {FEATURES}")
    return torch.eye(style_dim, FEATURES)


def feature_factors() -> list[int]:
    """The render factor (index into CODE) of each code feature."""
    return [k for k, (_, kind, spec) in enumerate(CODE) for _ in range(len(spec) if kind == "c" else 1)]


def style_masks(model: Generator) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """Per affine style layer, a 0/1 mask [channels, style_dim] of its weight: channel i of layer l reads only
    the W coordinates (features, see `factor_embedding`) of one render factor, that of feature (i + 7 l) mod
    FEATURES. Trained under these masks, every style channel belongs to one factor, so S is disentangled by
    construction, as StyleSpace found it to be in GAN-trained StyleGAN2 (one attribute per channel), and a
    global direction's per-channel relevance picks the channels of the factor the text names."""
    factors = feature_factors()
    cols = {}
    for j, k in enumerate(factors):
        cols.setdefault(k, []).append(j)
    out = []
    for l, affine in enumerate(model._affines):
        mask = torch.zeros_like(affine.weight)
        for i in range(mask.shape[0]):
            mask[i, cols[factors[(i + 7 * l) % FEATURES]]] = 1.0
        out.append((affine, mask))
    return out


def render_z(z: torch.Tensor, size: int = 64) -> torch.Tensor:
    """The target images [N,3,size,size] in [-1,1] of the faces z stands for."""
    return D.to_tensor([render(i, a, size=size) for i, a in params_from_z(z)])


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1,1] (peak-to-peak 2)."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4 / mse)


def _feature_ranges() -> tuple[torch.Tensor, torch.Tensor]:
    """Per code feature, its smallest and largest value (psi = 1)."""
    lo, hi = [], []
    for _, kind, spec in CODE:
        if kind == "u":
            lo.append(-math.sqrt(3)), hi.append(math.sqrt(3))
        elif kind == "c":
            k = len(spec)
            lo += [-1 / math.sqrt(k)] * k
            hi += [(1 - 1 / k) * math.sqrt(k)] * k
        else:
            lo.append(-spec / math.sqrt(spec * (1 - spec))), hi.append((1 - spec) / math.sqrt(spec * (1 - spec)))
    return torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)


def code_offset(q: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """c [style_dim]: the smallest per-coordinate shift that makes Q f + c positive for every code f (plus a
    margin). The mapping network ends in a leaky ReLU, so the W it can output exactly are the positive ones."""
    lo, hi = _feature_ranges()
    qd = q.double()
    return (torch.maximum(-qd * lo, -qd * hi).sum(1) + margin).float()


def w_of_code(f: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The W a code stands for: Q f + c."""
    return f @ q.T + code_offset(q)


RAMP = 1e-4  # half-width, in z_hat units, of the ramps that stand for the category boundaries
KNOTS = 10  # knots of the piecewise-linear normal CDF per continuous factor
_NORMAL = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))


def _boundaries(kind: str, spec) -> list[float]:
    """The z_hat values where a categorical (or Bernoulli) factor changes value, in increasing order."""
    cuts = [j / len(spec) for j in range(1, len(spec))] if kind == "c" else [spec]
    return [float(_NORMAL.icdf(torch.tensor(p, dtype=torch.float64))) for p in cuts]


def construct_mapping(model: Generator, q: torch.Tensor) -> None:
    """Set the mapping network (in place) to compute z -> Q f(z) + c exactly, up to ramps of half-width RAMP
    at the category boundaries and a piecewise-linear normal CDF for the continuous factors (max error ~0.02).

    The code is a known function of z_hat = PixelNorm(z), so it is built, not fitted (a fitted 4 x 128 MLP
    left ~0.06 mean squared error per W coordinate: step functions are hard to learn and easy to write).
    Layer 1: leaky-ReLU ramps of single z_hat coordinates (a pair per category boundary; knots at normal
    quantiles for continuous factors). Layer 2: f + 3 (positive), as linear combinations of the ramps (a
    boundary's step is the difference of its pair; the CDF a least-squares fit). Middle layers: identity on
    positive values. Last layer: Q f + c (positive, see `code_offset`). Every layer carries sqrt(2) gains of
    the fused leaky ReLU (slope 0.2). Needs n_mlp >= 3 and style_dim >= the ramp units (128 here)."""
    from styleclip.nets.stylegan2 import EqualLinear

    layers = [m for m in model.style if isinstance(m, EqualLinear)]
    dim = model.config.style_dim
    if len(layers) < 3:
        raise ValueError("construct_mapping needs n_mlp >= 3")
    r2, neg = math.sqrt(2), 0.2
    normal = _NORMAL
    # layer 1: units (coordinate, knot); output h = sqrt(2) * lrelu(z_hat[i] - knot)
    units = []
    for i, (_, kind, spec) in enumerate(CODE):
        if kind == "u":
            units += [(i, float(normal.icdf(torch.tensor((j + 0.5) / KNOTS, dtype=torch.float64))))
                      for j in range(KNOTS)]
        else:
            for t in _boundaries(kind, spec):
                units += [(i, t - RAMP), (i, t + RAMP)]
    if len(units) > dim:
        raise ValueError(f"construct_mapping needs style_dim >= {len(units)}")
    w1 = torch.zeros(dim, dim, dtype=torch.float64)
    b1 = torch.zeros(dim, dtype=torch.float64)
    for u, (i, knot) in enumerate(units):
        w1[u, i], b1[u] = 1.0, -knot
    index = {key: u for u, key in enumerate(units)}

    def lrelu(x):
        return torch.where(x >= 0, x, neg * x) * r2

    # layer 2: p = f + 3 from the layer-1 outputs
    w2 = torch.zeros(dim, dim, dtype=torch.float64)
    b2 = torch.full((dim,), 0.0, dtype=torch.float64)
    grid = torch.linspace(-6, 6, 4001, dtype=torch.float64)
    weight = normal.log_prob(grid).exp() + 1e-3
    row = 0
    for i, (_, kind, spec) in enumerate(CODE):
        if kind == "u":
            ks = [k for (j, k) in units if j == i]
            basis = torch.stack([lrelu(grid - k) for k in ks] + [torch.ones_like(grid)], 1)
            target = (normal.cdf(grid) - 0.5) * math.sqrt(12)
            sw = weight.sqrt()[:, None]
            coef = torch.linalg.lstsq(basis * sw, target[:, None] * sw[:, 0:1]).solution[:, 0]
            for k, a in zip(ks, coef[:-1]):
                w2[row, index[(i, k)]] = a
            b2[row] = coef[-1]
            row += 1
            continue
        steps = []  # step_j(x) = a . (h_lo, h_hi) + b: 0 below the cut, 1 above
        for t in _boundaries(kind, spec):
            lo_u, hi_u = index[(i, t - RAMP)], index[(i, t + RAMP)]
            span = (t + RAMP) - (t - RAMP)
            scale = 1 / (r2 * (1 - neg) * span)
            steps.append(({lo_u: scale, hi_u: -scale}, -neg / (1 - neg)))
        if kind == "b":  # bit = (u < p) = 1 - step
            (a, b), = steps
            sd = math.sqrt(spec * (1 - spec))
            for u, v in a.items():
                w2[row, u] = -v / sd
            b2[row] = (1 - b - spec) / sd
            row += 1
            continue
        k = len(spec)
        bounds = [({}, 1.0)] + steps + [({}, 0.0)]  # one-hot_v = step_v - step_{v+1}, step_0 = 1, step_k = 0
        for v in range(k):
            (a0, c0), (a1, c1) = bounds[v], bounds[v + 1]
            for u, x in a0.items():
                w2[row, u] += x * math.sqrt(k)
            for u, x in a1.items():
                w2[row, u] -= x * math.sqrt(k)
            b2[row] = (c0 - c1 - 1 / k) * math.sqrt(k)
            row += 1
    assert row == FEATURES
    b2[:FEATURES] += 3.0
    # middle layers: identity on the (positive) f + 3; last layer: Q f + c = Q (h / sqrt2 - 3) + c
    mids = []
    for _ in layers[2:-1]:
        w = torch.zeros(dim, dim, dtype=torch.float64)
        w[range(FEATURES), range(FEATURES)] = 1 / r2
        mids.append((w, torch.zeros(dim, dtype=torch.float64)))
    qd = q.double()
    w_last = torch.zeros(dim, dim, dtype=torch.float64)
    w_last[:, :FEATURES] = qd / r2 / r2
    b_last = (code_offset(q).double() - 3.0 * qd.sum(1)) / r2
    with torch.no_grad():
        for layer, (w, b) in zip(layers, [(w1, b1), (w2, b2), *mids, (w_last, b_last)]):
            layer.weight.copy_((w / layer.scale).float())
            layer.bias.copy_((b / layer.lr_mul).float())
        model.w_avg.copy_(model.mean_latent(4096))
