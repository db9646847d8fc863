"""Plain-torch StyleGAN2 ops (no compiled extensions): run on CPU, CUDA and MPS alike."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def _inplace_ok(x: torch.Tensor) -> bool:
    """In-place updates are safe when autograd does not need x (inference): saves allocations and passes."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = SQRT2, clamp: float | None = None) -> torch.Tensor:
    """Add a per-channel bias (dim 1), leaky ReLU, multiply by `scale`; optional symmetric clamp."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    b = bias.view(shape).to(x.dtype)
    if _inplace_ok(x) and not bias.requires_grad:
        out = F.leaky_relu(x.add_(b), negative_slope, inplace=True).mul_(scale)
        return out.clamp_(-clamp, clamp) if clamp is not None else out
    out = F.leaky_relu(x + b, negative_slope) * scale
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
    conv_pad = 0
    if p0 == p1 and p0 >= 0:
        conv_pad = p0  # symmetric padding goes into the convolutions (no padded copy)
    else:
        x = F.pad(x, [p0, p1, p0, p1])
    # A true convolution flips the kernel; F.conv2d is a correlation.
    k = kernel_1d.flip(0).to(dtype=x.dtype, device=x.device) * math.sqrt(gain)
    taps = k.numel()
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, 1, taps).expand(c, 1, 1, taps), padding=(0, conv_pad), groups=c)
    x = F.conv2d(x, k.view(1, 1, taps, 1).expand(c, 1, taps, 1), padding=(conv_pad, 0), groups=c)
    return x


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     up: bool = False, blur_kernel_1d: torch.Tensor | None = None, eps: float = 1e-8,
                     weight_sq: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN2 modulated convolution. weight [Co,Ci,k,k] (already scaled by its equalised-lr gain),
    styles [N,Ci]; `weight_sq` = sum over the kernel of weight^2 ([Co,Ci]) may be passed precomputed.

    Two exact evaluations of the same function (real arithmetic), chosen by cost:
    - input scaling (non-fused): scale the input by the styles, one shared convolution over the batch, scale
      the output by the demodulation coefficients. Cheap where weights are large and images small, and the
      only form used when gradients flow (its backward needs no weight-gradient convolution);
    - weight modulation (inference only; for a single image, or where the image is large relative to the
      weight): per-sample modulated weights and one plain (N=1) or grouped convolution, skipping two passes
      over the activations. Grouped convolutions are slow on CPU for small images, so those use input scaling.
    Upsampling (up=True): transposed convolution with stride 2, then the FIR blur (rosinality layout).
    """
    n, ci = styles.shape
    co, _, kh, kw = weight.shape
    dcoefs = None
    if demodulate:
        if weight_sq is None:
            weight_sq = weight.float().square().sum(dim=(2, 3))
        # sum_{i,k} (w[o,i,k] * s[n,i])^2 = (s^2) @ (sum_k w^2)^T
        dcoefs = torch.rsqrt(styles.float().square() @ weight_sq.t() + eps)  # [N, Co]
    h, w = x.shape[-2:]
    out_px = h * w * (4 if up else 1)
    grads = torch.is_grad_enabled() and (x.requires_grad or styles.requires_grad or weight.requires_grad)
    if not grads and (n == 1 or 2 * co * ci * kh * kw < ci * h * w + co * out_px):
        wn = weight.unsqueeze(0) * styles.to(weight.dtype).view(n, 1, ci, 1, 1)
        if dcoefs is not None:
            wn = wn * dcoefs.to(weight.dtype).view(n, co, 1, 1, 1)
        wn = wn.to(x.dtype)
        if n == 1:
            return _conv(x, wn[0], up, blur_kernel_1d)
        # one grouped convolution (samples as groups) writes the batch without a concatenation copy
        xg = x.reshape(1, n * ci, h, w)
        if up:
            out = F.conv_transpose2d(xg, wn.transpose(1, 2).reshape(n * ci, co, kh, kw), stride=2, groups=n)
            out = upfirdn2d(out.view(n, co, *out.shape[2:]), blur_kernel_1d, pad=(1, 1), gain=4.0)
            return out
        out = F.conv2d(xg, wn.reshape(n * co, ci, kh, kw), padding=kh // 2, groups=n)
        return out.view(n, co, *out.shape[2:])
    x = x * styles.to(x.dtype).view(n, ci, 1, 1)
    out = _conv(x, weight.to(x.dtype), up, blur_kernel_1d)
    if dcoefs is not None:
        d = dcoefs.to(out.dtype).view(n, co, 1, 1)
        out = out.mul_(d) if _inplace_ok(out) else out * d
    return out


def _conv(x: torch.Tensor, weight: torch.Tensor, up: bool, blur_kernel_1d: torch.Tensor | None) -> torch.Tensor:
    if up:
        out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        return upfirdn2d(out, blur_kernel_1d, pad=(1, 1), gain=4.0)
    return F.conv2d(x, weight, padding=weight.shape[-1] // 2)
