"""The official code's StyleGAN2 arithmetic on CPU, as the benchmarks' baseline.

StyleCLIP runs rosinality's `model.py`; on CPU its ops fall back to plain torch. `official_ops()` makes our
`Generator` compute the way that code does (our re-implementation of its steps, same parameters):
- ModulatedConv2d (fused=True): per-sample weights scale * weight * style, demodulated by the rsqrt of their
  sum of squares, then one grouped convolution with the batch as groups (transposed, stride 2, to upsample);
- Blur and Upsample: upfirdn2d_native: zero insertion by padding a 6-D view, zero padding, then every channel
  as its own image ([N*C,1,H,W]) through one 2-D convolution with the 4x4 kernel;
- FusedLeakyReLU (CPU path): leaky_relu(x + bias) * sqrt(2), out of place; NoiseInjection x + weight * noise;
- NCHW layout throughout.
Left as ours (negligible): ToRGB adds the upsampled skip in place; the equalised-lr gains of frozen weights are applied once and cached instead of in
every call (one multiply over each weight, under 2 % of a forward), and the style affines run as one call per
layer from `Generator.styles` instead of inside each conv (same operations).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def upfirdn2d_native(x, kernel_1d, *, up=1, pad=(0, 0), gain=1.0):
    """rosinality upfirdn2d_native (down=1) with the 2-D kernel outer(k, k) * gain."""
    n, c, h, w = x.shape
    k = torch.outer(kernel_1d, kernel_1d).to(x) * gain
    out = x.reshape(n * c, h, 1, w, 1, 1)
    out = F.pad(out, [0, 0, 0, up - 1, 0, 0, 0, up - 1]).view(n * c, h * up, w * up, 1)
    p0, p1 = pad
    out = F.pad(out, [0, 0, p0, p1, p0, p1]).permute(0, 3, 1, 2)
    out = F.conv2d(out.reshape(n * c, 1, *out.shape[2:]), k.flip([0, 1]).view(1, 1, *k.shape))
    return out.view(n, c, *out.shape[2:])


def modulated_conv2d_fused(x, weight, styles, *, demodulate=True, up=False, blur_kernel_1d=None, eps=1e-8,
                           weight_sq=None):
    n, ci = styles.shape
    co, _, kh, kw = weight.shape
    wn = weight.unsqueeze(0) * styles.view(n, 1, ci, 1, 1).to(weight.dtype)
    if demodulate:
        wn = wn * torch.rsqrt(wn.square().sum([2, 3, 4]) + eps).view(n, co, 1, 1, 1)
    x = x.reshape(1, n * ci, *x.shape[2:])
    if up:
        wn = wn.transpose(1, 2).reshape(n * ci, co, kh, kw)
        out = F.conv_transpose2d(x, wn.to(x.dtype), stride=2, groups=n)
        return upfirdn2d_native(out.view(n, co, *out.shape[2:]), blur_kernel_1d, pad=(1, 1), gain=4.0)
    out = F.conv2d(x, wn.reshape(n * co, ci, kh, kw).to(x.dtype), padding=kh // 2, groups=n)
    return out.view(n, co, *out.shape[2:])


def modulated_conv2d_official(x, weight, styles, *, demodulate=True, up=False, blur_kernel_1d=None, eps=1e-8,
                              weight_sq=None, bias=None):
    """ToRGB's modulated conv (+ its bias, out of place) as the official code computes it."""
    out = modulated_conv2d_fused(x, weight.contiguous(), styles, demodulate=demodulate, up=up,
                                 blur_kernel_1d=blur_kernel_1d, eps=eps)
    return out if bias is None else out + bias.view(1, -1, 1, 1).to(out.dtype)


def fused_leaky_relu_cpu(x, bias, negative_slope=0.2, scale=SQRT2, clamp=None):
    out = F.leaky_relu(x + bias.view((1, -1) + (1,) * (x.ndim - 2)).to(x.dtype), negative_slope) * scale
    return out.clamp(-clamp, clamp) if clamp is not None else out


def styled_conv2d_official(x, weight, styles, *, noise, bias, demodulate=True, up=False, blur_kernel_1d=None,
                           weight_sq=None, clamp=None, negative_slope=0.2, gain=SQRT2, noise_weight=None):
    if noise is not None and noise_weight is not None:
        noise = noise_weight * noise  # NoiseInjection: image + weight * noise
    weight = weight.contiguous()  # the official weights are NCHW (ours are cached in the convolution's layout)
    out = modulated_conv2d_fused(x, weight, styles, demodulate=demodulate, up=up, blur_kernel_1d=blur_kernel_1d)
    if bias is None:
        return out
    if noise is not None:
        out = out + noise.to(out.dtype)
    return fused_leaky_relu_cpu(out, bias, negative_slope, gain, clamp)


@contextlib.contextmanager
def official_ops():
    """Within the block, every Generator computes as the official code does on CPU (see the module doc)."""
    import styleclip.nets.stylegan2 as sg

    saved = (sg.styled_conv2d, sg.modulated_conv2d, sg.upfirdn2d, sg.fused_leaky_relu, sg.Generator._constant_input)
    sg.styled_conv2d, sg.modulated_conv2d, sg.upfirdn2d, sg.fused_leaky_relu = styled_conv2d_official, \
        modulated_conv2d_official, upfirdn2d_native, fused_leaky_relu_cpu
    sg.Generator._constant_input = lambda self, n: self.input.input.repeat(n, 1, 1, 1)
    try:
        yield
    finally:
        (sg.styled_conv2d, sg.modulated_conv2d, sg.upfirdn2d, sg.fused_leaky_relu,
         sg.Generator._constant_input) = saved
