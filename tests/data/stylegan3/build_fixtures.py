"""Build the StyleGAN3 parity fixtures with NVIDIA's own code (run by hand; never imported by the tests).

    python tests/data/stylegan3/build_fixtures.py --stylegan3 /path/to/NVlabs/stylegan3 [--out tests/data/stylegan3]

Needs a user-provided checkout of https://github.com/NVlabs/stylegan3 (not shipped: NVIDIA Source Code
License, non-commercial) plus numpy and scipy; runs on the CPU, where NVIDIA's ops take their reference
path (bias_act / upfirdn2d / filtered_lrelu `impl='ref'`). For each of config T and R it builds a tiny random
generator (32 px, w_dim 16, a few channels, the default 14 layers), randomises what initialisation leaves
constant (biases, the input affine, magnitude_ema, w_avg, T: a user transform; R: a small conv_clamp so the
clamp acts), and writes

- `sg3-{t,r}-tiny.pkl`: a dict with 'G_ema' pickled the way NVIDIA's training loop saves snapshots (persistent
  classes, nested storages), except that the embedded module source is replaced by a one-line placeholder,
  so no NVIDIA code ships inside the test data (readers never look at it);
- `sg3-{t,r}-tiny.npz`: z, w_plus and img for seeds 0..2 (psi 1), the same with psi 0.7 / cutoff 8, and
  NVIDIA's per-layer style vectors (input: t / |t[:2]|; toRGB: affine output x 1/sqrt(in_channels)),
  all float32, images from `G.synthesis(ws, noise_mode='const', force_fp32=True)`;
- `geometry.json`: the layer geometry NVIDIA derives for the published shapes (T/R at 1024, T 512, R 256).
"""
from __future__ import annotations

import argparse
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import torch

PLACEHOLDER = "# training/networks_stylegan3.py: module source omitted from this test fixture (NVIDIA licence)\n"
CONFIGS = {
    "t": dict(channel_base=128, channel_max=16, conv_kernel=3, use_radial_filters=False, conv_clamp=256),
    "r": dict(channel_base=256, channel_max=32, conv_kernel=1, use_radial_filters=True, conv_clamp=1.0),
}


def inverse_user_transform(translate, angle_deg):
    """What gen_images.py stores in `synthesis.input.transform`: the inverse of rotate+translate."""
    s, c = np.sin(np.radians(angle_deg)), np.cos(np.radians(angle_deg))
    m = np.array([[c, s, translate[0]], [-s, c, translate[1]], [0, 0, 1]])
    return np.linalg.inv(m)


def build(kind: str, out: Path) -> None:
    from torch_utils import persistence
    from training.networks_stylegan3 import Generator

    torch.manual_seed({"t": 1, "r": 2}[kind])
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), magnitude_ema_beta=0.999, **CONFIGS[kind])
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("affine.bias") or (name.endswith(".bias") and "mapping" not in name):
                p.add_(0.2 * torch.randn_like(p))
            if name == "synthesis.input.affine.weight":
                p.normal_(0, 0.5)
        for name, b in G.named_buffers():
            if name.endswith("magnitude_ema"):
                b.copy_(torch.empty([]).uniform_(0.3, 3.0))
        z = torch.randn(512, 16)
        G.mapping.w_avg.copy_(G.mapping(z, None)[:, 0].mean(0))
        if kind == "t":
            m = inverse_user_transform((0.1, -0.05), 10.0)
            G.synthesis.input.transform.copy_(torch.from_numpy(m).float())
    G_ema = G.eval().requires_grad_(False)

    for cls in persistence._decorators:  # keep NVIDIA's code out of the shipped pickle
        cls._orig_module_src = PLACEHOLDER
    with open(out / f"sg3-{kind}-tiny.pkl", "wb") as f:
        pickle.dump(dict(G_ema=G_ema, augment_pipe=None, training_set_kwargs=None), f)

    data = {}
    with torch.no_grad():
        zs = torch.from_numpy(np.stack([np.random.RandomState(s).randn(16) for s in range(3)])).float()
        for tag, psi, cutoff in (("", 1.0, None), ("_trunc", 0.7, 8)):
            ws = G.mapping(zs, None, truncation_psi=psi, truncation_cutoff=cutoff)
            img = G.synthesis(ws, noise_mode="const", force_fp32=True)
            data[f"z{tag}"], data[f"w_plus{tag}"], data[f"img{tag}"] = zs, ws, img
        ws = data["w_plus"]
        syn = G.synthesis
        t = syn.input.affine(ws[:, 0])
        styles = [t / t[:, :2].norm(dim=1, keepdim=True)]
        for i, name in enumerate(syn.layer_names):
            layer = getattr(syn, name)
            s = layer.affine(ws[:, i + 1])
            if layer.is_torgb:
                s = s / np.sqrt(layer.in_channels * layer.conv_kernel ** 2)
            styles.append(s)
        for i, s in enumerate(styles):
            data[f"style_{i}"] = s
    np.savez_compressed(out / f"sg3-{kind}-tiny.npz", **{k: v.numpy().astype(np.float32) for k, v in data.items()})
    print(f"sg3-{kind}-tiny: {len(syn.layer_names)} layers, img range "
          f"[{data['img'].min():.3f}, {data['img'].max():.3f}]")


GEOMETRY = {  # published shapes: T/R at 1024 (FFHQ, MetFaces), 512 (AFHQv2), 256 (FFHQ-U)
    "t-1024": dict(img_resolution=1024, channel_base=32768, channel_max=512),
    "r-1024": dict(img_resolution=1024, channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
    "t-512": dict(img_resolution=512, channel_base=32768, channel_max=512),
    "r-256": dict(img_resolution=256, channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True),
}


def geometry(out: Path) -> None:
    """`geometry.json`: every layer's name, sizes, rates, cutoffs, factors, taps and padding as NVIDIA's
    SynthesisNetwork derives them for the published shapes (no weights kept)."""
    import json

    from training.networks_stylegan3 import SynthesisNetwork

    result = {}
    for name, kw in GEOMETRY.items():
        syn = SynthesisNetwork(w_dim=4, img_channels=3, **kw)
        inp = syn.input
        layers = []
        for n in syn.layer_names:
            layer = getattr(syn, n)
            layers.append(dict(
                name=n, in_channels=layer.in_channels, out_channels=layer.out_channels,
                in_size=int(layer.in_size[0]), out_size=int(layer.out_size[0]),
                in_sampling_rate=int(layer.in_sampling_rate), out_sampling_rate=int(layer.out_sampling_rate),
                in_cutoff=float(layer.in_cutoff), out_cutoff=float(layer.out_cutoff),
                in_half_width=float(layer.in_half_width), out_half_width=float(layer.out_half_width),
                up_factor=layer.up_factor, down_factor=layer.down_factor, up_taps=layer.up_taps,
                down_taps=layer.down_taps, down_radial=bool(layer.down_radial), padding=layer.padding,
                up_filter_sum=None if layer.up_filter is None else float(layer.up_filter.double().sum()),
                down_filter_sq=None if layer.down_filter is None else float(layer.down_filter.double().square().sum())))
        result[name] = dict(kwargs=kw, input=dict(channels=inp.channels, size=int(inp.size[0]),
                                                  sampling_rate=float(inp.sampling_rate),
                                                  bandwidth=float(inp.bandwidth)), layers=layers)
    (out / "geometry.json").write_text(json.dumps(result, indent=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stylegan3", required=True, type=Path, help="a checkout of NVlabs/stylegan3")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    if not (args.stylegan3 / "training" / "networks_stylegan3.py").is_file():
        sys.exit(f"error: {args.stylegan3} is not a stylegan3 checkout")
    try:
        import pkg_resources  # noqa: F401  (conv2d_gradfix imports it; recent setuptools dropped it)
    except ImportError:
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    sys.path.insert(0, str(args.stylegan3.resolve()))
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in CONFIGS:
        build(kind, args.out)
    geometry(args.out)


if __name__ == "__main__":
    main()
