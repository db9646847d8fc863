"""Training of the toy-faces generator: the coded decoder (see styleclip.toy.generator for the design)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from styleclip.nets.stylegan2 import Generator, GeneratorConfig
from styleclip.toy import data as D
from styleclip.toy.assets import ASSETS, load_toy_classifier
from styleclip.toy.generator import (GENERATOR_CONFIG, TINY_GENERATOR_CONFIG, _params, code, code_embedding,
                                     construct_mapping, factor_embedding, params_from_z, psnr, render_z,
                                     style_masks, w_of_code)
from styleclip.toy.render import render
from styleclip.toy.training.train import Task


class GeneratorTask(Task):
    """Coded-decoder training: L1 + MSE between synthesis(Q f(z) + c) and render(params(z)) for a batch of z,
    half of them truncated (psi ~ U(0.5, 1): continuous factors toward their mean, categories kept). The
    synthesis learns from clean codes (one direction of W per category); the mapping network, which has nothing
    to learn (the code is a known function of z), is constructed in `build` (`construct_mapping`), so sampling
    is z ~ N(0, I) -> mapping -> synthesis as for any StyleGAN2. With `disentangled` (the recipe) Q puts each
    feature on its own W axis and the affine style layers stay masked to one factor per channel
    (`style_masks`, re-applied after every step)."""

    def __init__(self, *, batch_size=32, lr=2e-3, seed=0, tiny=False, warmup=200, eval_size=256,
                 finetune=False, disentangled=True):
        super().__init__("generator", batch_size, lr, seed, warmup, tiny, eval_size,
                         dict(TINY_GENERATOR_CONFIG if tiny else GENERATOR_CONFIG))
        # disentangled (the recipe): features on W axes and masked affine style layers (`style_masks`); else
        # the earlier layout, a random orthonormal Q and dense affines (S channels mix every factor)
        dim = self.config["style_dim"]
        self.disentangled = disentangled
        self.q = factor_embedding(dim) if disentangled else code_embedding(dim)
        self._masks = None
        # the constructed mapping has ramps 2e-4 wide and the affine biases absorb W's offset: fp16 would blur both
        self.keep_fp32 = ("style.", "modulation.bias")
        # finetune (a last phase, started --init-from the exported weights): the synthesis learns from what the
        # frozen mapping outputs, truncated toward w_avg like the CLI
        self.finetune = finetune

    def build(self):
        torch.manual_seed(self.seed)
        g = Generator(GeneratorConfig.from_dict(self.config))
        construct_mapping(g, self.q)
        self._masks = style_masks(g) if self.disentangled else []
        self.after_step(g)
        return g

    def after_step(self, model):
        with torch.no_grad():
            for affine, mask in self._masks or []:
                affine.weight.mul_(mask)

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
        img = model.synthesis(model.broadcast(w_of_code(f, self.q)))
        l1 = (img - target).abs().mean()
        return l1 + F.mse_loss(img, target), {"l1": float(l1.detach())}

    def optimizer(self, model):  # the mapping is constructed, not trained
        return torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("style.")],
                                lr=self.lr, betas=(0.0, 0.99))

    @torch.no_grad()
    def evaluate(self, model):
        """Held-out PSNR against the renders; with the packaged classifier (64 px models): the fraction of
        samples whose every attribute reads as intended, and per attribute (hair colour on non-bald heads)."""
        model.eval()
        z = self._z(0, self.eval_size, seed=2_000_003)  # held out: never a training seed
        target = render_z(z, size=self.config["size"])
        img = torch.cat([model.synthesis(model.mapping_plus(z[i:i + 64])) for i in range(0, len(z), 64)])
        coded = torch.cat([model.synthesis(model.broadcast(w_of_code(code(z[i:i + 64])[0], self.q)))
                           for i in range(0, len(z), 64)])
        out = {"psnr": float(psnr(img.clamp(-1, 1), target).mean()),
               "psnr_from_code": float(psnr(coded.clamp(-1, 1), target).mean())}  # synthesis alone
        if self.config["size"] == 64 and (ASSETS / "classifier.safetensors").is_file():
            read = load_toy_classifier().predict(img.clamp(-1, 1))
            want = [a for _, a in params_from_z(z)]
            # hair colour is invisible on a bald head (the classifier is not trained on it there): not scored
            ok = {a: [None if a == "hair_colour" and w.hair_style == "bald" else read[a][i] == getattr(w, a)
                      for i, w in enumerate(want)] for a in D.ATTRIBUTES}
            scored = {a: [v for v in vs if v is not None] for a, vs in ok.items()}
            out["classifier_agreement"] = {a: sum(v) / len(v) for a, v in scored.items()}
            out["classifier_all_attributes"] = sum(all(ok[a][i] is not False for a in ok)
                                                   for i in range(len(want))) / len(want)
            # distribution match: total variation distance between the value frequencies the classifier reads
            # on the samples and the renderer's frequencies of the intended values (0: identical)
            out["attribute_tv_distance"] = {}
            for a in D.ATTRIBUTES:
                idx = [i for i, v in enumerate(ok[a]) if v is not None]
                out["attribute_tv_distance"][a] = _tv([read[a][i] for i in idx], [getattr(want[i], a) for i in idx])
        return out


def _tv(a: list, b: list) -> float:
    """Total variation distance between the empirical distributions of two equally long label lists."""
    from collections import Counter

    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[k] - cb[k]) for k in set(ca) | set(cb)) / len(a)
