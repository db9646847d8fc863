"""StyleGAN2 generator in plain torch, with W, W+ and style space S.

Parameter names follow the rosinality layout (the one of `stylegan2-ffhq-config-f.pt`), so those
checkpoints load strictly; NVIDIA checkpoints are mapped onto the same names by `styleclip.store.readers`.
The fixed FIR kernels are not parameters here (they are rebuilt from the config), and `w_avg` is a buffer.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
import torch.nn.functional as F

from styleclip.nets.wspace import WSpace
from styleclip.nets.ops import fused_leaky_relu, make_kernel_1d, modulated_conv2d, styled_conv2d, upfirdn2d


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a StyleGAN2 generator (weights are separate).

    Channels at resolution r: min(channel_max, channel_base * channel_multiplier // r), which gives the
    rosinality table (config-f: channel_multiplier 2) and NVIDIA's channel_base = 16384 * multiplier.
    `conv_clamp` reproduces NVIDIA ADA/StyleGAN3-trained networks (activations clamped to +-conv_clamp).
    """

    size: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_base: int = 16384
    channel_max: int = 512
    lr_mlp: float = 0.01
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    conv_clamp: float | None = None

    def __post_init__(self):
        log = math.log2(self.size) if self.size > 0 else -1
        if self.size < 4 or log != int(log):
            raise ValueError(f"generator size must be a power of two >= 4, got {self.size}")
        object.__setattr__(self, "blur_kernel", tuple(self.blur_kernel))

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def num_ws(self) -> int:
        """Rows of W+ (n_latent): 18 at 1024."""
        return self.log_size * 2 - 2

    @property
    def num_noises(self) -> int:
        return (self.log_size - 2) * 2 + 1

    def channels(self, resolution: int) -> int:
        return min(self.channel_max, self.channel_base * self.channel_multiplier // resolution)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown generator config fields: {sorted(unknown)}")
        return cls(**d)


class StyleLayer(NamedTuple):
    """One entry of the style-space layer table."""

    index: int  # position in the list of style vectors (S)
    resolution: int
    kind: str  # "conv" or "torgb"
    channels: int  # length of the style vector (input channels of the modulated conv)
    wplus_row: int  # the W+ row that feeds it
    module: str  # dotted module name in the generator


def style_layer_table(config: GeneratorConfig) -> list[StyleLayer]:
    """The S-space layout: conv4, toRGB4, then per resolution up-conv, conv, toRGB (26 entries at 1024)."""
    c = config.channels
    table = [StyleLayer(0, 4, "conv", c(4), 0, "conv1"), StyleLayer(1, 4, "torgb", c(4), 1, "to_rgb1")]
    for i in range(config.log_size - 2):
        res = 2 ** (i + 3)
        n = len(table)
        table += [
            StyleLayer(n, res, "conv", c(res // 2), 2 * i + 1, f"convs.{2 * i}"),
            StyleLayer(n + 1, res, "conv", c(res), 2 * i + 2, f"convs.{2 * i + 1}"),
            StyleLayer(n + 2, res, "torgb", c(res), 2 * i + 3, f"to_rgbs.{i}"),
        ]
    return table


def frozen_scaled(module: nn.Module, slot: str, p: torch.Tensor, scale: float,
                  order: tuple[int, ...] | None = None) -> torch.Tensor:
    """p * scale, cached on the module while p is frozen and unchanged (inference: no per-call rescaling).
    `order`: the cached copy's memory order of p's dims, outermost first (same values and shape)."""
    if p.requires_grad or torch.compiler.is_compiling():
        return p * scale
    key = (p._version, p.data_ptr(), p.device, p.dtype)
    cached = module.__dict__.get(slot)
    if cached is None or cached[0] != key:
        scaled = p.detach() * scale
        if order is not None:
            scaled = scaled.permute(order).contiguous().permute(sorted(range(len(order)), key=order.__getitem__))
        cached = (key, scaled)
        module.__dict__[slot] = cached
    return cached[1]


class PixelNorm(nn.Module):
    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=self.dim, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weight N(0,1)/lr_mul, runtime gain lr_mul/sqrt(fan_in))."""

    def __init__(self, in_dim: int, out_dim: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = frozen_scaled(self, "_weight_cache", self.weight, self.scale)
        bias = frozen_scaled(self, "_bias_cache", self.bias, self.lr_mul)
        if self.activation:
            return fused_leaky_relu(F.linear(x, weight), bias)
        return F.linear(x, weight, bias)


class ModulatedConv2d(nn.Module):
    """Weight [1,Co,Ci,k,k] (rosinality layout) and the affine `modulation` producing the style vector."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, *, demodulate: bool = True,
                 upsample: bool = False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.demodulate = demodulate
        self.upsample = upsample
        self.register_buffer("blur_kernel_1d", make_kernel_1d(blur_kernel), persistent=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        weight, weight_sq = self._scaled_weight()
        return modulated_conv2d(x, weight, style, demodulate=self.demodulate, up=self.upsample,
                                blur_kernel_1d=self.blur_kernel_1d, weight_sq=weight_sq)

    def _scaled_weight(self):
        """weight * gain [Co,Ci,k,k] and its per-kernel sum of squares (cached while the weight is frozen)."""
        if self.weight.requires_grad or torch.compiler.is_compiling():  # (no Python-side cache in a traced graph)
            return self.weight[0] * self.scale, None
        # [1,Co,Ci,k,k] stored in the layout the convolution library takes without a copy for channels_last
        # activations: (Co,k,k,Ci) for a convolution, (Ci,k,k,Co) for the transposed one (weight.transpose(0,
        # 1)); modulating it (weight * factor) keeps that layout. Else each call reorders the weight (a copy).
        order = (0, 2, 3, 4, 1) if self.upsample else (0, 1, 3, 4, 2)
        full = frozen_scaled(self, "_weight_cache", self.weight, self.scale, order)
        if not self.demodulate:
            return full[0], None
        cached = self.__dict__.get("_wsq_cache")
        if cached is None or cached[0] is not full:
            cached = (full, full[0].float().square().sum(dim=(2, 3)))
            self.__dict__["_wsq_cache"] = cached
        return full[0], cached[1]


class NoiseInjection(nn.Module):
    """Holds the per-layer noise strength (applied inside `styled_conv2d`)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class FusedLeakyReLU(nn.Module):
    """Holds the per-channel bias and clamp of a StyledConv's activation (applied inside `styled_conv2d`)."""

    def __init__(self, channels: int, clamp: float | None = None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.clamp = clamp


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, style_dim: int, *, upsample: bool = False,
                 blur_kernel=(1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch, clamp=conv_clamp)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        weight, weight_sq = conv._scaled_weight()
        return styled_conv2d(x, weight, style, noise=noise, noise_weight=self.noise.weight, bias=self.activate.bias,
                             up=conv.upsample, blur_kernel_1d=conv.blur_kernel_1d, weight_sq=weight_sq,
                             clamp=self.activate.clamp)


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, *, upsample: bool = True, blur_kernel=(1, 3, 3, 1),
                 conv_clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample = upsample
        self.clamp = conv_clamp
        self.register_buffer("up_kernel_1d", make_kernel_1d(blur_kernel), persistent=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        weight, _ = self.conv._scaled_weight()
        grads = torch.is_grad_enabled() and (x.requires_grad or style.requires_grad or weight.requires_grad
                                             or self.bias.requires_grad)
        if not grads and self.clamp is None:  # inference: the bias inside the convolution, the skip in place
            out = modulated_conv2d(x, weight, style, demodulate=False, bias=self.bias.view(-1))
            return out if skip is None else out.add_(self._upsample(skip))
        out = styled_conv2d(x, weight, style, noise=None, bias=None, demodulate=False)
        out = out + self.bias.to(out.dtype)
        if self.clamp is not None:
            out = out.clamp(-self.clamp, self.clamp)
        if skip is not None:
            out = out + self._upsample(skip)
        return out

    def _upsample(self, skip: torch.Tensor) -> torch.Tensor:
        # rosinality Upsample: up=2, pad=(2,1) for a 4-tap kernel, gain 4
        taps = self.up_kernel_1d.numel()
        p = taps - 2
        return upfirdn2d(skip, self.up_kernel_1d, up=2, pad=((p + 1) // 2 + 1, p // 2), gain=4.0)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))


class Noises(nn.Module):
    """Fixed noise buffers noise_0 .. noise_{n-1} (used by noise_mode='const')."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        for k in range(config.num_noises):
            r = 2 ** ((k + 5) // 2)
            self.register_buffer(f"noise_{k}", torch.randn(1, 1, r, r))

    def as_list(self) -> list[torch.Tensor]:
        return [getattr(self, f"noise_{k}") for k in range(len(self._buffers))]


class Generator(WSpace, nn.Module):
    """StyleGAN2 generator: mapping z -> w, styles w_plus -> S, synthesis S -> image in about [-1, 1]."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = config
        cfg = config
        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(cfg.style_dim, cfg.style_dim, lr_mul=cfg.lr_mlp, activation=True) for _ in range(cfg.n_mlp)],
        )
        ch = cfg.channels
        kw = dict(blur_kernel=cfg.blur_kernel, conv_clamp=cfg.conv_clamp)
        self.input = ConstantInput(ch(4))
        self.conv1 = StyledConv(ch(4), ch(4), cfg.style_dim, **kw)
        self.to_rgb1 = ToRGB(ch(4), cfg.style_dim, upsample=False, **kw)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for i in range(cfg.log_size - 2):
            res = 2 ** (i + 3)
            self.convs.append(StyledConv(ch(res // 2), ch(res), cfg.style_dim, upsample=True, **kw))
            self.convs.append(StyledConv(ch(res), ch(res), cfg.style_dim, **kw))
            self.to_rgbs.append(ToRGB(ch(res), cfg.style_dim, **kw))
        self.noises = Noises(cfg)
        self.register_buffer("w_avg", torch.zeros(cfg.style_dim))
        self.layers = style_layer_table(cfg)
        self._affines = [self.get_submodule(layer.module).conv.modulation for layer in self.layers]

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    # ---- W ----------------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z [N,style_dim] -> w [N,style_dim], truncated toward `w_avg` by psi (1 = no truncation)."""
        _check_shape(z, (None, self.config.style_dim), "z")
        w = self.style(z)
        return self.truncate(w, truncation_psi)

    # ---- S ----------------------------------------------------------------------------------------
    def styles(self, w_plus: torch.Tensor) -> list[torch.Tensor]:
        """w_plus [N,num_ws,D] -> the style vectors S: one [N,C_i] per entry of `self.layers`."""
        _check_shape(w_plus, (None, self.num_ws, self.config.style_dim), "w_plus")
        if not torch.compiler.is_compiling() and not any(a.weight.requires_grad or a.bias.requires_grad
                                                          for a in self._affines):
            # (also with gradients to w_plus: same values in both modes; not traced: its cache is Python-side state)
            return self._styles_batched(w_plus)
        return [affine(w_plus[:, layer.wplus_row]) for layer, affine in zip(self.layers, self._affines)]

    def _styles_batched(self, w_plus: torch.Tensor) -> list[torch.Tensor]:
        """styles() in three ops instead of one matrix-vector product per layer (frozen affines): every affine
        against every W+ row in one matrix product ([N,num_ws,sum C_i], about 84 M multiply-adds per image at
        1024), then each layer's block (its row, its channels) gathered and the biases added. Same values up to
        float rounding; on a busy machine each of the 26 small products cost a thread hand-off (~5-7 ms)."""
        weights = [frozen_scaled(a, "_weight_cache", a.weight, a.scale) for a in self._affines]
        biases = [frozen_scaled(a, "_bias_cache", a.bias, a.lr_mul) for a in self._affines]
        cached = self.__dict__.get("_affine_cat")
        if cached is None or len(cached[0]) != len(weights + biases) or any(
                a is not b for a, b in zip(cached[0], weights + biases)):
            w_cat, b_cat = torch.cat(weights), torch.cat(biases)
            total, offsets, off = w_cat.shape[0], [], 0
            for layer in self.layers:
                offsets.append(torch.arange(off, off + layer.channels) + layer.wplus_row * total)
                off += layer.channels
            cached = (weights + biases, w_cat, b_cat, torch.cat(offsets).to(w_cat.device))
            self.__dict__["_affine_cat"] = cached
        _, w_cat, b_cat, index = cached
        y = torch.matmul(w_plus, w_cat.t()).flatten(1).index_select(1, index)
        y = y.add_(b_cat.to(y.dtype))
        return list(y.split([layer.channels for layer in self.layers], dim=1))

    # ---- synthesis -------------------------------------------------------------------------------
    def synthesis(self, w_plus: torch.Tensor, noise_mode: str = "const",
                  generator: torch.Generator | None = None, *, checkpoint_min_res: int | None = None) -> torch.Tensor:
        """w_plus [N,num_ws,D] -> img [N,3,size,size] (checkpoint_min_res: see synthesis_from_styles)."""
        return self.synthesis_from_styles(self.styles(w_plus), noise_mode=noise_mode, generator=generator,
                                          checkpoint_min_res=checkpoint_min_res)

    def synthesis_from_styles(self, styles: list[torch.Tensor], noise_mode: str = "const",
                              generator: torch.Generator | None = None, *,
                              checkpoint_min_res: int | None = None) -> torch.Tensor:
        """S (list of [N,C_i]) -> img [N,3,size,size]. noise_mode: const (stored buffers), random, none.

        checkpoint_min_res: when gradients flow, recompute the blocks of this resolution and above in the
        backward pass instead of keeping their activations (activation checkpointing: much less memory
        at 512-1024 px for about one extra forward of those blocks; same values)."""
        if len(styles) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} style vectors, got {len(styles)}")
        for s, layer in zip(styles, self.layers):
            _check_shape(s, (None, layer.channels), f"styles[{layer.index}]")
        n = styles[0].shape[0]
        noise = self._noise(noise_mode, n, styles[0].device, generator)
        x = self._constant_input(n)
        x = self.conv1(x, styles[0], noise[0])
        img = self.to_rgb1(x, styles[1])
        for i, to_rgb in enumerate(self.to_rgbs):
            k = 2 + 3 * i
            block = (x, img, styles[k], styles[k + 1], styles[k + 2], noise[2 * i + 1], noise[2 * i + 2])
            if checkpoint_min_res is not None and 2 ** (i + 3) >= checkpoint_min_res and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                x, img = checkpoint(self._block, i, *block, use_reentrant=False)
            else:
                x, img = self._block(i, *block)
        return img.contiguous()

    def _block(self, i, x, img, s_up, s_conv, s_rgb, noise_up, noise_conv):
        """One resolution: up-conv, conv, toRGB (+ upsampled skip)."""
        x = self.convs[2 * i](x, s_up, noise_up)
        x = self.convs[2 * i + 1](x, s_conv, noise_conv)
        return x, self.to_rgbs[i](x, s_rgb, img)

    def synthesis_range(self, styles: list, start: int = 0, stop: int | None = None,
                        state: tuple | None = None, noise_mode: str = "const") -> tuple:
        """Run only the style layers [start, stop) of the synthesis; returns the state (x, img) after them.

        `state` is the (x, img) returned by the previous range (None when start == 0; img is None before
        the first toRGB), `styles` the full list, where entries outside the range may be None. Chained
        ranges perform the same operations as `synthesis_from_styles`, so their final img equals it exactly;
        this lets callers reuse everything below a layer. Noise must be deterministic ('const' or 'none').
        """
        stop = len(self.layers) if stop is None else stop
        if not 0 <= start <= stop <= len(self.layers) or len(styles) != len(self.layers):
            raise ValueError(f"bad range [{start}, {stop}) or styles of length {len(styles)}")
        if noise_mode not in ("const", "none"):
            raise ValueError(f"synthesis_range needs deterministic noise ('const' or 'none'), got {noise_mode!r}")
        if state is None:
            if start != 0:
                raise ValueError("a range that does not start at layer 0 needs the state of the layers below")
            s0 = next(s for s in styles[start:stop] if s is not None)
            state = (self._constant_input(s0.shape[0]), None)
        x, img = state
        noise = self._noise(noise_mode, 0, None, None)
        for layer in self.layers[start:stop]:
            _check_shape(styles[layer.index], (None, layer.channels), f"styles[{layer.index}]")
            module = self.get_submodule(layer.module)
            if layer.kind == "torgb":
                img = module(x, styles[layer.index], img)
            else:  # the t-th conv layer uses noise buffer t
                t = sum(1 for other in self.layers[:layer.index] if other.kind == "conv")
                x = module(x, styles[layer.index], noise[t])
        return x, (img.contiguous() if stop == len(self.layers) and img is not None else img)

    def _constant_input(self, n: int) -> torch.Tensor:
        """The learned 4x4 input for a batch of n, channels_last: every convolution, FIR filter and
        elementwise op of the synthesis then runs in that layout (oneDNN/cuDNN are up to several times faster
        in it than in NCHW, most of all on the few-channel high-resolution layers). Values are unchanged."""
        return self.input.input.expand(n, -1, -1, -1).contiguous(memory_format=torch.channels_last)

    def forward(self, w_plus: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return self.synthesis(w_plus, noise_mode=noise_mode)

    def _noise(self, mode: str, n: int, device, generator) -> list[torch.Tensor]:
        buffers = self.noises.as_list()
        if mode == "const":
            return buffers
        if mode == "none":
            return [torch.zeros_like(b) for b in buffers]
        if mode == "random":
            return [torch.randn((n, 1) + b.shape[2:], generator=generator, device=b.device if generator is None
                                else generator.device).to(device) for b in buffers]
        raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {mode!r}")


def _check_shape(t: torch.Tensor, shape: tuple, name: str) -> None:
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ",".join("N" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(t.shape)}")
