"""The toy-faces generator: our StyleGAN2 `Generator`, trained as a decoder of the render parameters.

Design. z ~ N(0, I) *is* the face: the mapping network's PixelNorm gives z_hat = z / rms(z), and the first
coordinates of z_hat, pushed through the normal CDF to u in (0,1), choose the renderer's parameters (a
uniform range for continuous identity factors, a bucket for categorical ones, u < 0.3 for a beard: the
distributions of `sample_identity` / `sample_attributes`). The whole generator (mapping + synthesis) is trained
to reproduce `render(params(z))`, so `synthesis(mapping_plus(z))` with z ~ N(0, I) samples exactly the render
distribution, W/W+/S are the usual StyleGAN2 spaces, and training is plain regression (stable and cheap on 2
cores, unlike GAN training from scratch, which gave colour noise after 10 minutes in a probe). The unused z
coordinates carry no information; the decoder learns to ignore them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from styleclip.nets.stylegan2 import Generator, GeneratorConfig
from styleclip.toy import data as D
from styleclip.toy.render import (BACKGROUNDS, EYE_COLOURS, GLASSES, EXPRESSIONS, HAIR_COLOURS, HAIR_STYLES,
                                  SKIN_TONES, Attributes, Identity, render)
from styleclip.toy.train import ASSETS, Task, load_toy_classifier

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
TINY_GENERATOR_CONFIG = {"size": 16, "style_dim": 48, "n_mlp": 2, "channel_multiplier": 1, "channel_base": 128,
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


def render_z(z: torch.Tensor, size: int = 64) -> torch.Tensor:
    """The target images [N,3,size,size] in [-1,1] of the faces z stands for."""
    return D.to_tensor([render(i, a, size=size) for i, a in params_from_z(z)])


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1,1] (peak-to-peak 2)."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4 / mse)


MAPPING_FIT_STEPS = 20_000


def fit_mapping(model: Generator, q: torch.Tensor, *, steps: int, seed: int = 0, batch: int = 2048,
                lr: float = 1e-2, log=None) -> float:
    """Fit the mapping network to z -> Q f(z) alone (no synthesis, so cheap: ~20 ms a step), Adam with momentum
    and a cosine decay: the categorical codes are step functions of z, which the joint training only blurs.
    Returns the final MSE; deterministic given `seed`."""
    mapping = model.style
    opt = torch.optim.Adam(mapping.parameters(), lr=lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(seed + 3)
    loss = torch.tensor(float("nan"))
    with torch.enable_grad():
        for step in range(steps):
            for grp in opt.param_groups:
                grp["lr"] = lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * step / steps))
            z = torch.randn(batch, q.shape[0], generator=gen)
            loss = F.mse_loss(mapping(z), code(z)[0] @ q.T)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if log is not None and (step + 1) % 2000 == 0:
                log(f"mapping fit {step + 1}/{steps}: mse {float(loss):.4f}")
    return float(loss.detach())


class GeneratorTask(Task):
    """Coded-decoder training, two losses per step on disjoint parameters:
    - synthesis: L1 + MSE between synthesis(Q f(z)) and render(params(z)) for a batch of z, half of them
      truncated (psi ~ U(0.5, 1): continuous factors toward their mean, categories kept);
    - mapping: MSE between mapping(z) and Q f(z) on a large batch (no rendering: cheap).
    The synthesis thus learns from clean codes (one direction of W per category) while the mapping learns the
    discontinuous z -> code function from many samples; sampling stays z ~ N(0, I) -> mapping -> synthesis."""

    MAPPING_BATCH = 1024

    def __init__(self, *, batch_size=32, lr=2e-3, seed=0, tiny=False, warmup=200, eval_size=256,
                 finetune=False):
        super().__init__("generator", batch_size, lr, seed, warmup, tiny, eval_size,
                         dict(TINY_GENERATOR_CONFIG if tiny else GENERATOR_CONFIG))
        self.q = code_embedding(self.config["style_dim"])
        # finetune (a last phase, started --init-from the exported, mapping-fitted weights): the synthesis learns
        # to decode what the frozen mapping actually outputs (its small errors included), truncated like the CLI
        self.finetune = finetune

    def build(self):
        torch.manual_seed(self.seed)
        g = Generator(GeneratorConfig.from_dict(self.config))
        # Only the first CODE_DIMS coordinates of z carry information: start the first mapping layer blind to
        # the others (rescaled to keep its output scale), so the signal is not diluted 128/15-fold at the start.
        first = g.style[1]
        with torch.no_grad():
            first.weight[:, CODE_DIMS:] = 0
            first.weight[:, :CODE_DIMS] *= math.sqrt(first.weight.shape[1] / CODE_DIMS)
        return g

    def optimizer(self, model):
        return torch.optim.Adam(model.parameters(), lr=self.lr, betas=(0.0, 0.99))

    def _z(self, step: int, n: int, seed: int | None = None) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(D._rng(self.seed if seed is None else seed, step).integers(2**62)))
        return torch.randn(n, self.config["style_dim"], generator=g)

    def loss(self, model, step):
        z = self._z(step, self.batch_size)
        g = torch.Generator().manual_seed(int(D._rng(self.seed + 1, step).integers(2**62)))
        psi = torch.where(torch.rand(len(z), generator=g) < 0.5, 0.5 + 0.5 * torch.rand(len(z), generator=g),
                          torch.ones(len(z)))
        f, u_render = code(z, psi)
        target = D.to_tensor([render(i, a, size=self.config["size"]) for i, a in _params(u_render)])
        if self.finetune:
            with torch.no_grad():
                w = model.w_avg + psi[:, None] * (model.mapping(z) - model.w_avg)
            img = model.synthesis(model.broadcast(w))
            l1 = (img - target).abs().mean()
            return l1 + F.mse_loss(img, target), {"l1": float(l1.detach())}
        img = model.synthesis(model.broadcast(f @ self.q.T))
        l1 = (img - target).abs().mean()
        zb = self._z(step, self.MAPPING_BATCH, seed=self.seed + 2)
        l_map = F.mse_loss(model.mapping(zb), code(zb)[0] @ self.q.T)
        return l1 + F.mse_loss(img, target) + l_map, {"l1": float(l1.detach()), "map": float(l_map.detach())}

    def finalize(self, model):
        if self.finetune:  # the mapping was fitted before and the synthesis adapted to it: keep both
            return
        fit_mapping(model, self.q, steps=MAPPING_FIT_STEPS if not self.tiny else 50, seed=self.seed)
        with torch.no_grad():
            model.w_avg.copy_(model.mean_latent(4096, seed=self.seed))

    @torch.no_grad()
    def evaluate(self, model):
        """Held-out PSNR against the renders; with the packaged classifier (64 px models): the fraction of
        samples whose every attribute reads as intended, and per attribute."""
        model.eval()
        z = self._z(0, self.eval_size, seed=2_000_003)  # held out: never a training seed
        target = render_z(z, size=self.config["size"])
        img = torch.cat([model.synthesis(model.mapping_plus(z[i:i + 64])) for i in range(0, len(z), 64)])
        coded = torch.cat([model.synthesis(model.broadcast(code(z[i:i + 64])[0] @ self.q.T))
                           for i in range(0, len(z), 64)])
        out = {"psnr": float(psnr(img.clamp(-1, 1), target).mean()),
               "psnr_from_code": float(psnr(coded.clamp(-1, 1), target).mean())}  # synthesis alone
        if self.config["size"] == 64 and (ASSETS / "classifier.safetensors").is_file():
            read = load_toy_classifier().predict(img.clamp(-1, 1))
            want = [a for _, a in params_from_z(z)]
            ok = {a: [read[a][i] == getattr(w, a) for i, w in enumerate(want)] for a in D.ATTRIBUTES}
            out["classifier_agreement"] = {a: sum(v) / len(v) for a, v in ok.items()}
            out["classifier_all_attributes"] = sum(all(ok[a][i] for a in ok) for i in range(len(want))) / len(want)
        return out


def load_toy_generator(directory=None) -> Generator:
    """The exported toy generator (generator.safetensors + generator.json), frozen."""
    from pathlib import Path

    from styleclip.toy.train import _config, read_safetensors

    directory = Path(directory) if directory is not None else ASSETS
    g = Generator(GeneratorConfig.from_dict(_config(directory, "generator")))
    g.load_state_dict(read_safetensors(directory / "generator.safetensors"))
    return g.eval().requires_grad_(False)
