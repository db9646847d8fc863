"""StyleGAN3 generator (configs T and R, "Alias-Free GAN") in plain torch, with W, W+ and style space S.

Same contract as `styleclip.nets.stylegan2.Generator`: `mapping`, `w_avg`, `num_ws`, `broadcast`, `styles`,
`synthesis`, `synthesis_from_styles` and a style-space layer table `layers`. The network:

- mapping: pixel norm, `n_mlp` (2 in the published models) equalised-lr linear layers with leaky ReLU;
- input: Fourier features. The input affine maps w_plus[:, 0] to t = (r_c, r_s, t_x, t_y), normalised by
  |(r_c, r_s)|; it rotates and translates the stored frequencies `freqs` / `phases` (after the user
  transform `transform`, the inverse of the image-space one), features outside the band are faded out;
- `num_layers` modulated convolutions (T: 3x3, R: 1x1) on margins around the image, each followed by a
  filtered leaky ReLU (bias, upsample + low-pass, leaky ReLU x gain + clamp, low-pass + downsample), the input
  scaled by rsqrt(magnitude_ema); a final 1x1 toRGB (no demodulation, no activation), output x output_scale.

S space (as stylegan3-editing defines it): the normalised t (4 values), then each layer's affine output, toRGB
included (there multiplied by the toRGB weight gain 1/sqrt(in_channels)). `synthesis_from_styles` uses t as
given (no second normalisation), so an edited t may also scale the frequencies.

The geometry (sampling rates, cutoffs, sizes, channels, paddings) follows from the config; the filters, the
frequencies and `magnitude_ema` are buffers, loaded from the checkpoint (designed here only for a fresh net).
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
from styleclip.nets.stylegan2 import EqualLinear, PixelNorm, StyleLayer, _check_shape

ARCHITECTURE = "stylegan3"


@dataclass(frozen=True)
class StyleGAN3Config:
    """Architecture of a StyleGAN3 generator (NVIDIA's constructor arguments; weights are separate).

    Config T: conv_kernel 3, use_radial_filters False; config R: conv_kernel 1, use_radial_filters True and
    twice the channels (channel_base 65536, channel_max 1024 for the published models).
    """

    size: int = 1024
    style_dim: int = 512
    n_mlp: int = 2
    lr_mlp: float = 0.01
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2 ** 2.1
    last_stopband_rel: float = 2 ** 0.3
    margin_size: int = 10
    output_scale: float = 0.25
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256.0

    def __post_init__(self):
        if self.size < 4:
            raise ValueError(f"generator size must be >= 4, got {self.size}")
        if not 0 <= self.num_critical < self.num_layers:
            raise ValueError(f"num_critical must be in 0..num_layers-1, got {self.num_critical}")

    @property
    def num_ws(self) -> int:
        """Rows of W+: the input, the num_layers layers and toRGB (16 for the published models)."""
        return self.num_layers + 2

    @property
    def kind(self) -> str:
        """'r' for the rotation-equivariant config (radial filters), else 't'."""
        return "r" if self.use_radial_filters else "t"

    def to_dict(self) -> dict:
        return {"architecture": ARCHITECTURE, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "StyleGAN3Config":
        d = {k: v for k, v in d.items() if k != "architecture"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown StyleGAN3 config fields: {sorted(unknown)}")
        return cls(**d)

    def input_spec(self) -> "InputSpec":
        g = _geometry(self)
        return InputSpec(channels=g["channels"][0], size=g["sizes"][0], sampling_rate=g["rates"][0],
                         bandwidth=g["cutoffs"][0])

    def layer_specs(self) -> list["LayerSpec"]:
        """One spec per synthesis layer (num_layers + 1, toRGB last), as NVIDIA's SynthesisNetwork derives them."""
        g = _geometry(self)
        specs = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            torgb = idx == self.num_layers
            critical = idx >= self.num_layers - self.num_critical
            in_rate, out_rate = int(g["rates"][prev]), int(g["rates"][idx])
            tmp_rate = max(in_rate, out_rate) * (1 if torgb else self.lrelu_upsampling)
            up, down = round(tmp_rate / in_rate), round(tmp_rate / out_rate)
            up_taps = self.filter_size * up if up > 1 and not torgb else 1
            down_taps = self.filter_size * down if down > 1 and not torgb else 1
            kernel = 1 if torgb else self.conv_kernel
            in_size, out_size = g["sizes"][prev], g["sizes"][idx]
            # output size before downsampling, minus the upsampled input, plus what the filters take away
            pad_total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
            pad_lo = (pad_total + up) // 2  # symmetric sample positions (paper, appendix C.3)
            specs.append(LayerSpec(
                index=idx, is_torgb=torgb, is_critically_sampled=critical,
                in_channels=g["channels"][prev], out_channels=g["channels"][idx], in_size=in_size, out_size=out_size,
                in_sampling_rate=in_rate, out_sampling_rate=out_rate, tmp_sampling_rate=tmp_rate,
                in_cutoff=g["cutoffs"][prev], out_cutoff=g["cutoffs"][idx],
                in_half_width=g["half_widths"][prev], out_half_width=g["half_widths"][idx],
                conv_kernel=kernel, up_factor=up, down_factor=down, up_taps=up_taps, down_taps=down_taps,
                down_radial=self.use_radial_filters and not critical,
                padding=(pad_lo, pad_total - pad_lo, pad_lo, pad_total - pad_lo)))
        return specs


class InputSpec(NamedTuple):
    channels: int
    size: int
    sampling_rate: float
    bandwidth: float


class LayerSpec(NamedTuple):
    """Geometry of one synthesis layer (sizes include the margins; padding is x0, x1, y0, y1)."""

    index: int
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        """NVIDIA's module name, L{idx}_{size}_{channels}."""
        return f"L{self.index}_{self.out_size}_{self.out_channels}"


def _geometry(cfg: StyleGAN3Config) -> dict[str, list]:
    """Per-layer cutoffs, stopbands, sampling rates, sizes and channels: geometric progressions from the first
    layer to the image (the last num_critical layers critically sampled)."""
    n = cfg.num_layers
    last_cutoff = cfg.size / 2
    last_stopband = last_cutoff * cfg.last_stopband_rel
    exps = [min(i / (n - cfg.num_critical), 1.0) for i in range(n + 1)]
    cutoffs = [cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** e for e in exps]
    stopbands = [cfg.first_stopband * (last_stopband / cfg.first_stopband) ** e for e in exps]
    rates = [2.0 ** math.ceil(math.log2(min(s * 2, cfg.size))) for s in stopbands]
    half_widths = [max(s, r / 2) - c for s, r, c in zip(stopbands, rates, cutoffs)]
    sizes = [int(r) + cfg.margin_size * 2 for r in rates]
    sizes[-2:] = [cfg.size, cfg.size]
    channels = [int(round(min((cfg.channel_base / 2) / c, cfg.channel_max))) for c in cutoffs]
    channels[-1] = cfg.img_channels
    return dict(cutoffs=cutoffs, rates=rates, half_widths=half_widths, sizes=sizes, channels=channels)


def style_layer_table(config: StyleGAN3Config) -> list[StyleLayer]:
    """The S-space layout: the input transform (kind 'input', 4 values), then each synthesis layer (kind 'conv'),
    toRGB last (kind 'torgb'). `resolution` is the layer's output sampling rate; W+ row i feeds entry i."""
    table = [StyleLayer(0, int(config.input_spec().sampling_rate), "input", 4, 0, "input")]
    for spec in config.layer_specs():
        table.append(StyleLayer(spec.index + 1, spec.out_sampling_rate, "torgb" if spec.is_torgb else "conv",
                                spec.in_channels, spec.index + 1, f"synthesis_layers.{spec.index}"))
    return table


def user_transform(translate: tuple[float, float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor:
    """The `transform` buffer for an image shifted by `translate` (x, y in image widths: (0.25, 0) moves the
    content a quarter of the width to the right) and rotated by `rotate` degrees, as NVIDIA's gen_images.py
    --translate / --rotate: the inverse of that image-space transform, [3,3]."""
    a = math.radians(rotate)
    m = torch.tensor([[math.cos(a), math.sin(a), translate[0]], [-math.sin(a), math.cos(a), translate[1]],
                      [0.0, 0.0, 1.0]], dtype=torch.float64)
    return torch.linalg.inv(m).float()


# ---- filters ---------------------------------------------------------------------------------------------
def _kaiser_beta(numtaps: int, width: float, fs: float) -> float:
    """Kaiser window beta for a transition band of `width` (Kaiser's empirical formulas)."""
    atten = 2.285 * (numtaps - 1) * math.pi * (width / (fs / 2)) + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def _kaiser_window(numtaps: int, beta: float) -> torch.Tensor:
    n = torch.arange(numtaps, dtype=torch.float64)
    ratio = 2 * n / (numtaps - 1) - 1
    return torch.special.i0(beta * torch.sqrt((1 - ratio ** 2).clamp(min=0))) / torch.special.i0(
        torch.tensor(beta, dtype=torch.float64))


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, *,
                          radial: bool = False) -> torch.Tensor | None:
    """Kaiser-windowed low-pass FIR: separable 1-D taps (a windowed sinc with unit DC gain) or, radial, a 2-D
    windowed jinc normalised to sum 1. None for a single tap (identity)."""
    if numtaps == 1:
        return None
    beta = _kaiser_beta(numtaps, width, fs)
    window = _kaiser_window(numtaps, beta)
    if not radial:
        c = cutoff / (fs / 2)
        m = torch.arange(numtaps, dtype=torch.float64) - (numtaps - 1) / 2
        h = c * torch.sinc(c * m) * window
        return (h / h.sum()).float()
    x = (torch.arange(numtaps, dtype=torch.float64) - (numtaps - 1) / 2) / fs
    r = torch.hypot(x.view(1, -1), x.view(-1, 1))
    safe = torch.where(r > 0, r, torch.ones_like(r))
    f = torch.where(r > 0, torch.special.bessel_j1(2 * cutoff * math.pi * safe) / (math.pi * safe),
                    torch.full_like(r, cutoff))  # the limit at r = 0
    f = f * torch.outer(window, window)
    return (f / f.sum()).float()


def _fir(x: torch.Tensor, f: torch.Tensor | None, *, gain: float = 1.0, stride: int = 1) -> torch.Tensor:
    """Convolve each channel with f (1-D: separable along W then H; 2-D: as is), keeping every `stride`-th
    output: a strided convolution, equal to filtering at full resolution and then taking [::stride]."""
    if f is None:
        x = x if gain == 1 else x * gain
        return x[:, :, ::stride, ::stride] if stride > 1 else x
    c = x.shape[1]
    f = f.to(x.dtype)
    if f.ndim == 1:
        k = (f * gain ** 0.5).flip(0)
        taps = k.numel()
        x = F.conv2d(x, k.view(1, 1, 1, taps).repeat(c, 1, 1, 1), stride=(1, stride), groups=c)
        return F.conv2d(x, k.view(1, 1, taps, 1).repeat(c, 1, 1, 1), stride=(stride, 1), groups=c)
    k = (f * gain).flip((0, 1))
    return F.conv2d(x, k.view(1, 1, *k.shape).repeat(c, 1, 1, 1), stride=stride, groups=c)


def _upsample_pad(x: torch.Tensor, up: int, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """Zero insertion then padding (x0, x1, y0, y1; negative = crop) in one zero-filled allocation: sample
    (i, j) goes to (y0 + i*up, x0 + j*up); samples that land outside are dropped. channels_last."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    out_h, out_w = h * up + py0 + py1, w * up + px0 + px1
    out = x.new_zeros(n, out_h, out_w, c).permute(0, 3, 1, 2)  # NCHW shape, channels_last memory

    def kept(p0, size, out_size):  # first and one-past-last input index whose target lies inside
        lo = max(0, -(p0 // up)) if p0 < 0 else 0
        hi = min(size, (out_size - 1 - p0) // up + 1)
        return lo, max(lo, hi)

    i0, i1 = kept(py0, h, out_h)
    j0, j1 = kept(px0, w, out_w)
    if i1 > i0 and j1 > j0:
        out[:, :, py0 + i0 * up: py0 + (i1 - 1) * up + 1: up, px0 + j0 * up: px0 + (j1 - 1) * up + 1: up] = \
            x[:, :, i0:i1, j0:j1]
    return out


def filtered_lrelu(x: torch.Tensor, *, up_filter: torch.Tensor | None, down_filter: torch.Tensor | None,
                   bias: torch.Tensor, up: int, down: int, padding: tuple[int, int, int, int], gain: float,
                   slope: float, clamp: float | None) -> torch.Tensor:
    """NVIDIA's reference filtered leaky ReLU in its four steps: add the bias; upsample by zero insertion, pad
    (negative = crop) and low-pass (gain up^2); leaky ReLU x gain, clamped to +-clamp; low-pass and keep every
    `down`-th sample (a strided convolution).

    Runs in channels_last (the depthwise filters are several times faster in it on CPU); without autograd the
    activation steps work in place (the largest tensors here are 1-2 GB per image at 1024 px)."""
    x = x + bias.to(x.dtype).view(1, -1, 1, 1)
    x = _upsample_pad(x, up, padding)
    x = _fir(x, up_filter, gain=float(up * up))
    inplace = not (torch.is_grad_enabled() and x.requires_grad)
    if slope != 1:
        x = F.leaky_relu(x, slope, inplace=inplace)
    if gain != 1:
        x = x.mul_(gain) if inplace else x * gain
    if clamp is not None:
        x = x.clamp_(-clamp, clamp) if inplace else x.clamp(-clamp, clamp)
    return _fir(x, down_filter, stride=down)


# ---- modules -----------------------------------------------------------------------------------------------
class SynthesisInput(nn.Module):
    """Fourier features [N, channels, size, size], rotated and translated by the input style t [N,4]."""

    def __init__(self, spec: InputSpec, style_dim: int):
        super().__init__()
        self.spec = spec
        c = spec.channels
        freqs = torch.randn(c, 2)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * spec.bandwidth
        self.weight = nn.Parameter(torch.randn(c, c))
        self.affine = EqualLinear(style_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))  # inverse of the user's image-space transform
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(c) - 0.5)

    def style(self, w: torch.Tensor) -> torch.Tensor:
        """w [N,D] -> t [N,4] = (cos, sin, x, y) normalised by |(r_c, r_s)|."""
        t = self.affine(w)
        return t / t[:, :2].norm(dim=1, keepdim=True)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        n = t.shape[0]
        one, zero = torch.ones_like(t[:, 0]), torch.zeros_like(t[:, 0])
        # inverse rotation and translation with respect to the image, then the user transform
        m_r = torch.stack([t[:, 0], -t[:, 1], zero, t[:, 1], t[:, 0], zero, zero, zero, one], 1).view(n, 3, 3)
        m_t = torch.stack([one, zero, -t[:, 2], zero, one, -t[:, 3], zero, zero, one], 1).view(n, 3, 3)
        transforms = m_r @ m_t @ self.transform.to(t.dtype).unsqueeze(0)
        freqs = self.freqs.to(t.dtype).unsqueeze(0)
        phases = self.phases.to(t.dtype).unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]  # [N,C,2]
        spec = self.spec
        amplitudes = (1 - (freqs.norm(dim=2) - spec.bandwidth) / (spec.sampling_rate / 2 - spec.bandwidth)).clamp(0, 1)
        # pixel centres in units of the sampling period, centred on the image
        coords = (torch.arange(spec.size, device=t.device, dtype=t.dtype) + 0.5 - spec.size / 2) / spec.sampling_rate
        grid = torch.stack(torch.meshgrid(coords, coords, indexing="xy"), dim=-1)  # [H,W,2] as (x, y)
        x = torch.einsum("hwk,nck->nhwc", grid, freqs) + phases.view(n, 1, 1, -1)
        x = torch.sin(x * (2 * math.pi)) * amplitudes.view(n, 1, 1, -1)
        x = x @ (self.weight / math.sqrt(spec.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated convolution (input x rsqrt(magnitude_ema)) and filtered leaky ReLU; toRGB: no demodulation,
    a linear activation."""

    def __init__(self, spec: LayerSpec, style_dim: int, *, conv_clamp: float | None):
        super().__init__()
        self.spec = spec
        self.conv_clamp = conv_clamp
        k = spec.conv_kernel
        self.affine = EqualLinear(style_dim, spec.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(spec.out_channels, spec.in_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(spec.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", design_lowpass_filter(
            spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, spec.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, spec.tmp_sampling_rate,
            radial=spec.down_radial))
        self.style_gain = 1 / math.sqrt(spec.in_channels * k * k) if spec.is_torgb else 1.0

    def style(self, w: torch.Tensor) -> torch.Tensor:
        """w [N,D] -> this layer's style vector [N,in_channels] (toRGB: times its weight gain)."""
        s = self.affine(w)
        return s * self.style_gain if self.spec.is_torgb else s

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        weight = self.weight.to(x.dtype)
        input_gain = self.magnitude_ema.to(x.dtype).rsqrt()
        if not spec.is_torgb:
            # The styles' and the weight's overall scale cancel in the demodulation; normalising them first
            # only keeps numbers in range (per sample here: NVIDIA's batch-wide factor makes a sample's output
            # depend on the batch through the 1e-8 alone).
            weight = weight * weight.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            style = style * style.square().mean(dim=1, keepdim=True).rsqrt()
            dcoefs = (style.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # [N,Co]
        # modulating the input channels == modulating the weight's input channels (one shared convolution)
        scale = style * input_gain
        x = F.conv2d(x * scale.view(*scale.shape, 1, 1), weight, padding=spec.conv_kernel - 1)
        if not spec.is_torgb:
            x = x * dcoefs.view(*dcoefs.shape, 1, 1)
        return filtered_lrelu(x, up_filter=self.up_filter, down_filter=self.down_filter, bias=self.bias,
                              up=spec.up_factor, down=spec.down_factor, padding=spec.padding,
                              gain=1.0 if spec.is_torgb else math.sqrt(2), slope=1.0 if spec.is_torgb else 0.2,
                              clamp=self.conv_clamp)


class StyleGAN3Generator(WSpace, nn.Module):
    """StyleGAN3 generator: mapping z -> w, styles w_plus -> S, synthesis S -> image in about [-1, 1]."""

    def __init__(self, config: StyleGAN3Config = StyleGAN3Config()):
        super().__init__()
        self.config = cfg = config
        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(cfg.style_dim, cfg.style_dim, lr_mul=cfg.lr_mlp, activation=True) for _ in range(cfg.n_mlp)],
        )
        self.input = SynthesisInput(cfg.input_spec(), cfg.style_dim)
        self.synthesis_layers = nn.ModuleList(
            SynthesisLayer(spec, cfg.style_dim, conv_clamp=cfg.conv_clamp)
            for spec in cfg.layer_specs())
        self.register_buffer("w_avg", torch.zeros(cfg.style_dim))
        self.layers = style_layer_table(cfg)

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def size(self) -> int:
        return self.config.size

    # ---- W ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def set_transform(self, translate: tuple[float, float] = (0.0, 0.0), rotate: float = 0.0) -> None:
        """Shift / rotate every image this generator draws (see `user_transform`); (0, 0), 0 restores the
        identity. This changes the generator's state (a buffer), like loading other weights."""
        self.input.transform.copy_(user_transform(translate, rotate))

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """z [N,style_dim] -> w [N,style_dim], truncated toward `w_avg` by psi (1 = no truncation). A cutoff
        selects W+ rows, so it needs `mapping_plus` (a cutoff covering every row is accepted)."""
        if truncation_cutoff is not None and truncation_cutoff < self.num_ws and truncation_psi != 1.0:
            raise ValueError("a truncation cutoff truncates only some W+ rows: use mapping_plus")
        _check_shape(z, (None, self.config.style_dim), "z")
        return self.truncate(self.style(z), truncation_psi)

    # ---- S ----------------------------------------------------------------------------------------
    def styles(self, w_plus: torch.Tensor) -> list[torch.Tensor]:
        """w_plus [N,num_ws,D] -> S: the input's t [N,4], then one [N,C_i] per synthesis layer (toRGB last)."""
        _check_shape(w_plus, (None, self.num_ws, self.config.style_dim), "w_plus")
        out = [self.input.style(w_plus[:, 0])]
        out += [layer.style(w_plus[:, i + 1]) for i, layer in enumerate(self.synthesis_layers)]
        return out

    # ---- synthesis -------------------------------------------------------------------------------
    def synthesis(self, w_plus: torch.Tensor, noise_mode: str = "const",
                  generator: torch.Generator | None = None, *, checkpoint_min_res: int | None = None) -> torch.Tensor:
        """w_plus [N,num_ws,D] -> img [N,img_channels,size,size] (checkpoint_min_res: see synthesis_from_styles)."""
        return self.synthesis_from_styles(self.styles(w_plus), noise_mode=noise_mode, generator=generator,
                                          checkpoint_min_res=checkpoint_min_res)

    def synthesis_from_styles(self, styles: list[torch.Tensor], noise_mode: str = "const",
                              generator: torch.Generator | None = None, *,
                              checkpoint_min_res: int | None = None) -> torch.Tensor:
        """S (list of [N,C_i], see `layers`) -> img. StyleGAN3 has no noise inputs: noise_mode and generator
        are accepted for the shared contract and change nothing.

        checkpoint_min_res: when gradients flow, recompute the layers whose output sampling rate is at least
        this in the backward pass instead of keeping their activations (less memory, same values)."""
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        if len(styles) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} style vectors, got {len(styles)}")
        for s, layer in zip(styles, self.layers):
            _check_shape(s, (None, layer.channels), f"styles[{layer.index}]")
        x = self.input(styles[0])
        for layer, s in zip(self.synthesis_layers, styles[1:]):
            if checkpoint_min_res is not None and layer.spec.out_sampling_rate >= checkpoint_min_res \
                    and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                x = checkpoint(layer, x, s, use_reentrant=False)
            else:
                x = layer(x, s)
        return self._output(x)

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.config.output_scale if self.config.output_scale != 1 else x

    def synthesis_range(self, styles: list, start: int = 0, stop: int | None = None,
                        state: tuple | None = None, noise_mode: str = "const") -> tuple:
        """Run only the style layers [start, stop) of the synthesis; returns the state (x, img) after them.

        As in StyleGAN2: `state` is what the previous range returned (None when start == 0), `styles` the full
        list (entries outside the range may be None); img is None until the range ends with toRGB. Chained
        ranges perform the same operations as `synthesis_from_styles`, so their final img equals it exactly."""
        stop = len(self.layers) if stop is None else stop
        if not 0 <= start <= stop <= len(self.layers) or len(styles) != len(self.layers):
            raise ValueError(f"bad range [{start}, {stop}) or styles of length {len(styles)}")
        if noise_mode not in ("const", "none"):
            raise ValueError(f"synthesis_range needs deterministic noise ('const' or 'none'), got {noise_mode!r}")
        if state is None and start != 0:
            raise ValueError("a range that does not start at layer 0 needs the state of the layers below")
        x = None if state is None else state[0]
        for layer in self.layers[start:stop]:
            s = styles[layer.index]
            _check_shape(s, (None, layer.channels), f"styles[{layer.index}]")
            x = self.input(s) if layer.kind == "input" else self.synthesis_layers[layer.index - 1](x, s)
        return x, (self._output(x) if stop == len(self.layers) and x is not None else None)

    def forward(self, w_plus: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return self.synthesis(w_plus, noise_mode=noise_mode)


__all__ = ["StyleGAN3Config", "StyleGAN3Generator", "style_layer_table", "design_lowpass_filter", "user_transform",
           "filtered_lrelu", "LayerSpec", "InputSpec"]
