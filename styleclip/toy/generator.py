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
TINY_GENERATOR_CONFIG = {"size": 16, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 1, "channel_base": 128,
                         "channel_max": 16, "lr_mlp": 1.0}


def _decode(u: float, kind: str, spec):
    if kind == "u":
        return spec[0] + u * (spec[1] - spec[0])
    if kind == "c":
        return spec[min(int(u * len(spec)), len(spec) - 1)]
    return bool(u < spec)


def params_from_z(z: torch.Tensor) -> list[tuple[Identity, Attributes]]:
    """The render parameters each z [N, style_dim] stands for (a function of z / rms(z), what the mapping
    network sees after its PixelNorm)."""
    if z.ndim != 2 or z.shape[1] < CODE_DIMS:
        raise ValueError(f"z must be [N, >= {CODE_DIMS}], got {list(z.shape)}")
    z_hat = z.double() * torch.rsqrt(z.double().pow(2).mean(1, keepdim=True) + 1e-8)
    u = (0.5 * (1 + torch.erf(z_hat[:, :CODE_DIMS] / math.sqrt(2)))).tolist()
    out = []
    for row in u:
        idn = {f: _decode(row[i], k, s) for i, (f, k, s) in enumerate(IDENTITY_CODE)}
        off = len(IDENTITY_CODE)
        att = {f: _decode(row[off + i], k, s) for i, (f, k, s) in enumerate(ATTRIBUTE_CODE)}
        out.append((Identity(**idn), Attributes(**att)))
    return out


def render_z(z: torch.Tensor, size: int = 64) -> torch.Tensor:
    """The target images [N,3,size,size] in [-1,1] of the faces z stands for."""
    return D.to_tensor([render(i, a, size=size) for i, a in params_from_z(z)])


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1,1] (peak-to-peak 2)."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4 / mse)


class GeneratorTask(Task):
    """Decoder training: L1 + MSE between synthesis(mapping_plus(z)) and render(params(z))."""

    def __init__(self, *, batch_size=32, lr=2e-3, seed=0, tiny=False, warmup=200, eval_size=256):
        super().__init__("generator", batch_size, lr, seed, warmup, tiny, eval_size,
                         dict(TINY_GENERATOR_CONFIG if tiny else GENERATOR_CONFIG))

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
        target = render_z(z, size=self.config["size"])
        img = model.synthesis(model.mapping_plus(z))
        l1 = (img - target).abs().mean()
        return l1 + F.mse_loss(img, target), {"l1": float(l1.detach())}

    @torch.no_grad()
    def finalize(self, model):
        model.w_avg.copy_(model.mean_latent(4096, seed=self.seed))

    @torch.no_grad()
    def evaluate(self, model):
        """Held-out PSNR against the renders; with the packaged classifier (64 px models): the fraction of
        samples whose every attribute reads as intended, and per attribute."""
        model.eval()
        z = self._z(0, self.eval_size, seed=2_000_003)  # held out: never a training seed
        target = render_z(z, size=self.config["size"])
        img = torch.cat([model.synthesis(model.mapping_plus(z[i:i + 64])) for i in range(0, len(z), 64)])
        out = {"psnr": float(psnr(img.clamp(-1, 1), target).mean())}
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
