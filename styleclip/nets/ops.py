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
              gain: float = 1.0, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with the separable kernel outer(k, k) * gain.

    Same result as the reference upfirdn2d with a 2-D kernel that is an outer product (down=1). It runs as one
    depthwise convolution in channels_last layout (one pass over the activations; NCHW depthwise and 1-D passes
    are several times slower on CPU); with up > 1 as a transposed convolution of stride `up`, which is zero
    insertion followed by a true convolution, so no zero-filled copy is made. The result is channels_last.
    `bias` ([C]) is added to every output pixel inside that convolution (no separate pass).
    """
    c = x.shape[1]
    k1 = kernel_1d.to(dtype=x.dtype, device=x.device)
    taps = k1.numel()
    k = torch.outer(k1, k1).mul_(gain).view(1, 1, taps, taps).expand(c, 1, taps, taps).contiguous()
    x = x.contiguous(memory_format=torch.channels_last)
    p0, p1 = pad
    if up > 1:
        # The full transposed-convolution output starts taps-1 samples before the reference's first output.
        s0, s1 = taps - 1 - p0, taps - up - p1
        out = F.conv_transpose2d(x, k, bias, stride=up, groups=c, padding=s0 if s0 == s1 and s0 >= 0 else 0)
        return out if s0 == s1 and s0 >= 0 else F.pad(out, [-s0, -s1, -s0, -s1])
    # F.conv2d is a correlation: flip the kernel for a true convolution.
    if p0 == p1 and p0 >= 0:
        return F.conv2d(x, k.flip([2, 3]), bias, padding=p0, groups=c)
    return F.conv2d(F.pad(x, [p0, p1, p0, p1]), k.flip([2, 3]), bias, groups=c)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     up: bool = False, blur_kernel_1d: torch.Tensor | None = None, eps: float = 1e-8,
                     weight_sq: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN2 modulated convolution. weight [Co,Ci,k,k] (already scaled by its equalised-lr gain),
    styles [N,Ci]; `weight_sq` = sum over the kernel of weight^2 ([Co,Ci]) may be passed precomputed;
    `bias` ([Co]), when given, is added to the result (inside the last convolution where it can be).

    Two exact evaluations of the same function (real arithmetic):
    - weight modulation (inference on a single image whose activations outweigh the weight, i.e. from about
      128 px up): modulated, demodulated weights and one plain convolution, skipping two passes over the
      activations;
    - input scaling (batches, and whenever gradients flow): scale the input by the styles, one shared
      convolution over the batch, scale the output by the demodulation coefficients. Its backward needs no
      weight-gradient convolution, and it keeps the batch in channels_last layout, where the per-sample
      grouped convolution of the official code is about 2-3x slower on CPU.
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
    grads = torch.is_grad_enabled() and (x.requires_grad or styles.requires_grad or weight.requires_grad)
    grads = grads or (bias is not None and torch.is_grad_enabled() and bias.requires_grad)
    if not grads and _weight_modulation_pays(x, weight, n, up):
        wn = _modulated_weight(weight, styles, dcoefs).to(x.dtype)
        return _conv(x, wn, up, blur_kernel_1d, None if bias is None else bias.to(wn.dtype))
    x = x * styles.to(x.dtype).view(n, ci, 1, 1)
    b = None if bias is None else bias.to(x.dtype)
    out = _conv(x, weight.to(x.dtype), up, blur_kernel_1d, b if dcoefs is None else None)
    if dcoefs is not None:
        d = dcoefs.to(out.dtype).view(n, co, 1, 1)
        out = out.mul_(d) if _inplace_ok(out) else out * d
        if b is not None:
            b = b.view(1, co, 1, 1)
            out = out.add_(b) if _inplace_ok(out) else out + b
    return out


def _weight_modulation_pays(x: torch.Tensor, weight: torch.Tensor, n: int, up: bool) -> bool:
    """Single image: modulating the weight costs fewer element passes than scaling the activations."""
    co, ci, kh, kw = weight.shape
    h, w = x.shape[-2:]
    return n == 1 and 2 * co * ci * kh * kw < ci * h * w + co * h * w * (4 if up else 1)


def _modulated_weight(weight: torch.Tensor, styles: torch.Tensor, dcoefs: torch.Tensor | None,
                      gain: float = 1.0) -> torch.Tensor:
    """weight * styles (per input channel) * dcoefs (per output channel) * gain, for one image, in one pass
    over the weight; the result keeps the weight's memory layout (see ModulatedConv2d._scaled_weight)."""
    co, ci = weight.shape[:2]
    s = styles.to(weight.dtype).view(ci)
    if dcoefs is None:
        factor = s * gain if gain != 1.0 else s
    else:
        d = dcoefs.to(weight.dtype).view(co)
        factor = torch.outer(d * gain if gain != 1.0 else d, s)  # ([Co] is small: one pass of [Co,Ci])
    return weight * factor.view(-1, ci, 1, 1)


# Devices where the upsampling convolution and its FIR blur run as one transposed convolution with the blurred
# 3x3 kernel (6x6): 4x the multiply-adds but one pass over the activations fewer. On a GPU the depthwise blur
# is a slow, memory-bound kernel and the extra arithmetic is nearly free; on a CPU the arithmetic dominates.
FUSED_UPSAMPLING_DEVICES = ("cuda",)


def _fused_up_weight(weight: torch.Tensor, blur_kernel_1d: torch.Tensor) -> torch.Tensor:
    """[Co,Ci,3,3] -> [Co,Ci,6,6]: each 3x3 kernel fully convolved with the (symmetric) blur, gain 4."""
    co, ci, kh, kw = weight.shape
    k1 = blur_kernel_1d.to(dtype=weight.dtype, device=weight.device)
    taps = k1.numel()
    f = torch.outer(k1, k1).mul(4.0).view(1, 1, taps, taps)
    return F.conv2d(weight.reshape(co * ci, 1, kh, kw), f, padding=taps - 1).view(co, ci, kh + taps - 1,
                                                                                   kw + taps - 1)


def _conv(x: torch.Tensor, weight: torch.Tensor, up: bool, blur_kernel_1d: torch.Tensor | None,
          bias: torch.Tensor | None = None) -> torch.Tensor:
    """The (upsampling) convolution of a modulated conv, + a per-channel bias inside its last convolution."""
    if up:
        if x.device.type in FUSED_UPSAMPLING_DEVICES:  # same result: blur(T_w(x)) = T_{blur(w)}(x)
            return F.conv_transpose2d(x, _fused_up_weight(weight, blur_kernel_1d).transpose(0, 1), bias,
                                      stride=2, padding=2)
        out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        return upfirdn2d(out, blur_kernel_1d, pad=(1, 1), gain=4.0, bias=bias)
    return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    try:
        return t.contiguous(memory_format=torch.channels_last)
    except RuntimeError:  # under vmap (the fast relevance estimator's Jacobian) layouts cannot be queried
        return t


def _conv_input_grad(g: torch.Tensor, weight: torch.Tensor, up: bool, blur_kernel_1d: torch.Tensor | None,
                     in_shape: torch.Size) -> torch.Tensor:
    """Adjoint of `_conv` (a linear map of its input): the gradient of its input from that of its output."""
    if up and g.device.type in FUSED_UPSAMPLING_DEVICES:
        return F.conv2d(g, _fused_up_weight(weight, blur_kernel_1d).transpose(0, 1), stride=2, padding=2)
    if up:
        c = g.shape[1]
        taps = blur_kernel_1d.numel()
        k1 = blur_kernel_1d.to(dtype=g.dtype, device=g.device)
        k = torch.outer(k1, k1).mul_(4.0).view(1, 1, taps, taps).expand(c, 1, taps, taps).flip([2, 3])
        g = F.conv_transpose2d(g, k.contiguous(), padding=1, groups=c)
        return F.conv2d(g, weight.transpose(0, 1), stride=2)
    g = _channels_last(g)
    if weight.shape[-2:] == (1, 1):
        # A 1x1 conv's adjoint is one product per pixel. conv2d_input would return NCHW here (several times
        # slower, and every op after it then mixes layouts); this keeps channels_last.
        n, co, h, w = g.shape
        ci = weight.shape[1]
        return (g.permute(0, 2, 3, 1).reshape(-1, co) @ weight.reshape(co, ci)).view(n, h, w, ci).permute(0, 3, 1, 2)
    # oneDNN picks the layout from the weight's (the cached frozen weights already have this one)
    return torch.nn.grad.conv2d_input(in_shape, _channels_last(weight), g, padding=weight.shape[-1] // 2)


class _ModulatedConvAct(torch.autograd.Function):
    """modulated conv (input scaling) [+ noise + bias, leaky ReLU * gain], saving only its input and output.

    Autograd of the composed ops keeps about four activation-sized tensors per layer (the scaled input, the
    convolution output, the pre-activation, ...); this keeps the layer's input and output, which its neighbours
    keep anyway, and rebuilds the rest in backward from them (the convolution output from the output through
    the invertible leaky ReLU). Same forward values as the composed ops; for frozen weights (gradients to the
    input and styles only), as in latent optimization.
    """

    @staticmethod
    def forward(ctx, x, styles, dcoefs, weight, noise, bias, up, blur_kernel_1d, slope, gain):
        n, ci = styles.shape
        co = weight.shape[0]
        out = _conv(x * styles.to(x.dtype).view(n, ci, 1, 1), weight.to(x.dtype), up, blur_kernel_1d)
        if dcoefs is not None:
            out.mul_(dcoefs.to(out.dtype).view(n, co, 1, 1))
        saved_conv = None
        if bias is not None:
            if noise is not None:
                out.add_(noise.to(out.dtype))
            out = F.leaky_relu(out.add_(bias.to(out.dtype).view(1, -1, 1, 1)), slope, inplace=True).mul_(gain)
        elif dcoefs is not None:
            saved_conv = out  # (no activation: the output is the demodulated convolution itself)
        ctx.save_for_backward(x, styles, dcoefs, weight, noise, bias, out if bias is not None else saved_conv,
                              blur_kernel_1d)
        ctx.up, ctx.slope, ctx.gain, ctx.in_shape = up, slope, gain, x.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        x, styles, dcoefs, weight, noise, bias, out, blur_kernel_1d = ctx.saved_tensors
        # The forward's layout (channels_last): an NCHW gradient (e.g. from the image loss) would make every
        # elementwise pass below mix layouts and the convolution reorder 128 MB tensors at 1024 px.
        grad = _channels_last(grad)
        n, ci = styles.shape
        co = weight.shape[0]
        grad_d = None
        d = None if dcoefs is None else dcoefs.to(grad.dtype).view(n, co, 1, 1)
        # Temporaries are updated in place and dropped early: at 1024 px each is 128 MB.
        if bias is not None:
            # With z the pre-activation, out = gain * lrelu(z) and lrelu(z) = lrelu'(z) z, so the gradient of
            # the demodulated convolution c d = z - bias - noise is g_z = gain * lrelu'(z) * grad, and
            # sum(g_z * c d) = sum(grad * out) - bias * sum(g_z) - sum(g_z * noise): no pass rebuilds c.
            grad_c = torch.ops.aten.leaky_relu_backward(grad, out, ctx.slope, True)  # g_z / gain
            if dcoefs is not None and ctx.needs_input_grad[2]:
                cd = _sum_hw_product(grad, out) - ctx.gain * grad_c.sum((2, 3)) * bias.to(grad.dtype)
                if noise is not None:
                    cd = cd - ctx.gain * _sum_hw_product(grad_c, noise.to(grad.dtype).expand_as(grad_c))
                grad_d = cd.to(dcoefs.dtype) / dcoefs
            grad_c.mul_(ctx.gain if d is None else d * ctx.gain)
        else:
            if dcoefs is not None and ctx.needs_input_grad[2]:
                grad_d = _sum_hw_product(grad, out).to(dcoefs.dtype) / dcoefs
            grad_c = grad if d is None else grad * d
        del grad
        grad_xs = _conv_input_grad(grad_c, weight.to(grad_c.dtype), ctx.up, blur_kernel_1d, ctx.in_shape)
        del grad_c
        grad_s = _sum_hw_product(grad_xs, x).to(styles.dtype) if ctx.needs_input_grad[1] else None
        grad_x = grad_xs.mul_(styles.to(grad_xs.dtype).view(n, ci, 1, 1)) if ctx.needs_input_grad[0] else None
        return grad_x, grad_s, grad_d, None, None, None, None, None, None, None


def _sum_hw_product(a: torch.Tensor, b: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """sum over H, W of a * b ([N,C]), in bands of rows so the product never exists at full size."""
    h = a.shape[2]
    if a.numel() <= 1 << 22 or h <= rows or a.device.type == "cuda":  # a GPU has the memory, not the launches
        return (a * b).sum((2, 3))
    return sum((a[:, :, i:i + rows] * b[:, :, i:i + rows]).sum((2, 3)) for i in range(0, h, rows))


def styled_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, noise: torch.Tensor | None,
                  bias: torch.Tensor | None, demodulate: bool = True, up: bool = False,
                  blur_kernel_1d: torch.Tensor | None = None, weight_sq: torch.Tensor | None = None,
                  clamp: float | None = None, negative_slope: float = 0.2, gain: float = SQRT2,
                  noise_weight: torch.Tensor | None = None) -> torch.Tensor:
    """modulated_conv2d, + noise ([1 or N,1,H,W], times the strength `noise_weight` ([1]) when given), then
    fused_leaky_relu(., bias) when a bias is given. With frozen weights and gradients flowing to the input or styles, it runs as one autograd
    function that keeps 1 activation per layer instead of about 4 (same forward values)."""
    frozen = not (weight.requires_grad or (bias is not None and bias.requires_grad)
                  or (noise is not None and noise.requires_grad)
                  or (noise_weight is not None and noise_weight.requires_grad))
    grads = torch.is_grad_enabled() and (x.requires_grad or styles.requires_grad)
    needs_grad = grads or (torch.is_grad_enabled() and not frozen)
    if bias is not None and not needs_grad and styles.shape[0] == 1:
        return _styled_conv_inference(x, weight, styles, noise, noise_weight, bias, demodulate, up,
                                      blur_kernel_1d, weight_sq, clamp, negative_slope, gain)
    if noise is not None and noise_weight is not None:
        noise = noise_weight * noise
    if not (grads and frozen and clamp is None):
        out = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, blur_kernel_1d=blur_kernel_1d,
                               weight_sq=weight_sq)
        if bias is None:
            return out
        if noise is not None:
            noise = noise.to(out.dtype)
            out = out.add_(noise) if _inplace_ok(out) else out + noise
        return fused_leaky_relu(out, bias, negative_slope, gain, clamp)
    dcoefs = None
    if demodulate:
        if weight_sq is None:
            weight_sq = weight.float().square().sum(dim=(2, 3))
        dcoefs = torch.rsqrt(styles.float().square() @ weight_sq.t() + 1e-8)
    if torch.is_autocast_enabled(x.device.type):  # autocast skips custom functions: cast as it would a conv
        x = x.to(torch.get_autocast_dtype(x.device.type))
    with torch.autocast(x.device.type, enabled=False):
        return _ModulatedConvAct.apply(x, styles, dcoefs, weight, noise, bias, up, blur_kernel_1d,
                                       negative_slope, gain)


def _styled_conv_inference(x, weight, styles, noise, noise_weight, bias, demodulate, up, blur_kernel_1d,
                           weight_sq, clamp, negative_slope, gain):
    """styled_conv2d for one image without gradients, in two passes over the output after the convolution.

    gain * lrelu(z) = lrelu(gain * z) for gain > 0, and gain * z = conv(x, gain * w) + gain * bias +
    gain * noise: the gain rides on the modulated weight (a [Co,Ci] factor), the bias is added inside the
    convolution (for the upsampling conv, inside its FIR blur), so what is left is one in-place noise add and
    one in-place leaky ReLU (the composed ops make four passes: noise, bias, activation, gain).
    Taken for every single-image layer, also at 4-64 px where scaling the activations would move fewer bytes:
    it makes fewer ops, and on a busy machine each op costs a thread hand-off (A/B at size 64: 1.04x).
    """
    dcoefs = None
    if demodulate:
        if weight_sq is None:
            weight_sq = weight.float().square().sum(dim=(2, 3))
        dcoefs = torch.rsqrt(styles.float().square() @ weight_sq.t() + 1e-8)
    wn = _modulated_weight(weight, styles, dcoefs, gain).to(x.dtype)
    out = _conv(x, wn, up, blur_kernel_1d, bias.to(wn.dtype) * gain)
    if noise is not None:
        # no host sync for the strength on a GPU; no .item() graph break under torch.compile
        if noise_weight is not None and (noise_weight.device.type != "cpu" or torch.compiler.is_compiling()):
            noise, noise_weight = noise_weight * noise, None
        # A scalar alpha: addcmul_ with a broadcast strength runs several times slower on channels_last.
        alpha = gain if noise_weight is None else float(noise_weight) * gain
        out.add_(noise.to(out.dtype), alpha=alpha)
    out = F.leaky_relu_(out, negative_slope)
    return out.clamp_(-clamp, clamp) if clamp is not None else out
