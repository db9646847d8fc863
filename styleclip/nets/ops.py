"""Plain-torch StyleGAN2 ops (no compiled extensions): run on CPU, CUDA and MPS alike."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = SQRT2, clamp: float | None = None) -> torch.Tensor:
    """Add a per-channel bias (dim 1), leaky ReLU, multiply by `scale`; optional symmetric clamp."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = F.leaky_relu(x + bias.view(shape).to(x.dtype), negative_slope) * scale
    if clamp is not None:
        out = out.clamp(-clamp, clamp)
    return out


def make_kernel_1d(taps) -> torch.Tensor:
    """Normalised 1-D FIR taps; the 2-D kernel is their outer product (sum 1)."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    return k / k.sum()


def make_kernel(taps) -> torch.Tensor:
    """2-D kernel as stored in rosinality checkpoints (outer product, normalised to sum 1)."""
    k = make_kernel_1d(taps)
    return torch.outer(k, k)


def upfirdn2d(x: torch.Tensor, kernel_1d: torch.Tensor, *, up: int = 1, pad: tuple[int, int] = (0, 0),
              gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with the separable kernel outer(k, k) * gain.

    Same result as the reference upfirdn2d with a 2-D kernel that is an outer product (down=1):
    the filter runs as two 1-D depthwise passes, which is cheaper than one 2-D pass.
    """
    n, c, h, w = x.shape
    if up > 1:
        # Zero insertion without materialising a strided copy first.
        y = x.new_zeros(n, c, h, up, w, up)
        y[:, :, :, 0, :, 0] = x
        x = y.view(n, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [p0, p1, p0, p1])
    # A true convolution flips the kernel; F.conv2d is a correlation.
    k = kernel_1d.flip(0).to(dtype=x.dtype, device=x.device) * math.sqrt(gain)
    taps = k.numel()
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, 1, taps).expand(c, 1, 1, taps), groups=c)
    x = F.conv2d(x, k.view(1, 1, taps, 1).expand(c, 1, taps, 1), groups=c)
    return x


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     up: bool = False, blur_kernel_1d: torch.Tensor | None = None,
                     eps: float = 1e-8) -> torch.Tensor:
    """StyleGAN2 modulated convolution, evaluated in the non-fused form.

    weight [Co,Ci,k,k] (already scaled by its equalised-lr gain), styles [N,Ci].
    Scaling the input by the styles, one shared convolution and scaling the output by the
    demodulation coefficients equals the grouped (per-sample weight) form exactly in real arithmetic,
    and is faster on CPU: one large convolution instead of N small ones and no [N,Co,Ci,k,k] tensor.
    Upsampling (up=True): transposed convolution with stride 2, then the FIR blur (rosinality layout).
    """
    n, ci = styles.shape
    co, _, kh, kw = weight.shape
    w = weight.to(x.dtype)
    x = x * styles.to(x.dtype).view(n, ci, 1, 1)
    if up:
        out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
        out = upfirdn2d(out, blur_kernel_1d, pad=(1, 1), gain=4.0)
    else:
        out = F.conv2d(x, w, padding=kh // 2)
    if demodulate:
        # sum_{i,k} (w[o,i,k] * s[n,i])^2 = (s^2) @ (sum_k w^2)^T
        wsq = weight.float().square().sum(dim=(2, 3))  # [Co, Ci]
        dcoefs = torch.rsqrt(styles.float().square() @ wsq.t() + eps)  # [N, Co]
        out = out * dcoefs.to(out.dtype).view(n, co, 1, 1)
    return out
