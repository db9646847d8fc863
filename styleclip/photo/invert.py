"""Real photo -> W+: an optimization projector (after StyleGAN2's), or one pass of the e4e encoder.

The projector starts from w_avg in every W+ row and refines all rows (or, space "w", one w shared by
every layer) with Adam (lr ramp-up over the first 5 % of the steps, cosine ramp-down over the last 25 %),
with decaying Gaussian noise on the latent for exploration and the generator's noise buffers fixed
(noise_mode 'const'). Loss: a multi-scale pixel MSE (the reconstruction and the target compared at
loss_size and at successive halvings) plus, when an identity net is given, 1 - cos of its embeddings.
Results are cached by the aligned crop, the generator's weights and the settings, so a second run on the
same photo costs one synthesis.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from styleclip.store import cache
from styleclip.store import registry as pretrained
from styleclip.errors import CheckpointError, InputError
from styleclip.util.imaging import from_pil
from styleclip.losses import identity_loss
from styleclip.types import ProgressFn
from styleclip.util.fingerprint import encoder_fingerprint, generator_fingerprint, identity_fingerprint

E4E_INPUT_SIZE = 256
SPACES = ("w+", "w")


@dataclass(frozen=True)
class InversionConfig:
    """Projector settings. lr and ramps are StyleGAN2's projector's; steps lower than its 1000 because
    the W+ latent (one row per layer) converges faster than its single w. Adam's steps are about lr per
    coordinate, so lr 0.1 is sized for FFHQ's W (about 2.7 per coordinate, taking PTI's 30 as half its
    spread, as pti.py does); a narrower W wants a proportionally smaller lr (the toy model's W, 0.53 per
    coordinate: 0.02 in styleclip/factory.py), else the latent wanders off to where edits work less.
    space "w" optimizes one w broadcast to every layer (StyleGAN2's projector and PTI's pivot) instead of
    the free W+ rows."""

    steps: int = 500
    lr: float = 0.1
    lr_rampup: float = 0.05  # fraction of steps with a linear ramp-up
    lr_rampdown: float = 0.25  # fraction of steps with a cosine ramp-down to 0
    initial_noise_factor: float = 0.05  # latent noise std at step 0, in units of the W spread w_std
    noise_ramp: float = 0.75  # latent noise decays quadratically to 0 over this fraction of the steps
    loss_size: int = 256  # images are compared at this size (area-downsampled) ...
    pyramid_levels: int = 4  # ... and at this many successive halvings in all
    lambda_id: float = 0.1  # weight of the identity term (used only with an identity net)
    lambda_delta: float = 0.0  # optional pull of every W+ row toward their mean (keeps the latent editable)
    space: str = "w+"  # "w+": one row per layer; "w": one w broadcast to every layer (PTI's pivot, editable)
    seed: int = 0

    def __post_init__(self):
        from styleclip.util.checks import integer, number

        integer(self.steps, "steps", 1, 100_000)
        number(self.lr, "lr", lo=0.0, hi=10.0, open_lo=True)
        if self.space not in SPACES:
            raise ValueError(f"projector space must be one of {', '.join(SPACES)}, got {self.space!r}")


@dataclass
class InversionResult:
    """w_plus [N,num_ws,D] (detached), its reconstruction img [N,3,H,W], the loss per step, how it was got."""

    w_plus: torch.Tensor
    reconstruction: torch.Tensor
    method: str  # 'optimization' | 'e4e'
    losses: list[float] = field(default_factory=list)
    cached: bool = False


def learning_rate(step: int, steps: int, config: InversionConfig) -> float:
    """StyleGAN2 projector schedule: lr * ramp-up(t) * cosine ramp-down(t), t = step / steps."""
    t = step / steps
    ramp = min(1.0, (1.0 - t) / config.lr_rampdown) if config.lr_rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if config.lr_rampup > 0:
        ramp *= min(1.0, t / config.lr_rampup)
    return config.lr * ramp


def multiscale_mse(img: torch.Tensor, target: torch.Tensor, *, size: int, levels: int) -> torch.Tensor:
    """Sum over scales (size, size/2, ...) of the per-sample pixel MSE -> [N]."""
    size = min(size, img.shape[-1])
    img, target = _resize(img, size), _resize(target, size)
    total = img.new_zeros(img.shape[0])
    for level in range(max(1, levels)):
        total = total + (img - target).square().flatten(1).mean(1)
        if level + 1 < levels and img.shape[-1] >= 2:
            img, target = F.avg_pool2d(img, 2), F.avg_pool2d(target, 2)
    return total


def _resize(img: torch.Tensor, size: int) -> torch.Tensor:
    if img.shape[-1] == size and img.shape[-2] == size:
        return img
    if img.shape[-1] % size == 0 and img.shape[-2] == img.shape[-1]:
        return F.avg_pool2d(img, img.shape[-1] // size)  # exact area downsampling
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def w_spread(generator, n: int = 10_000, *, seed: int = 0) -> float:
    """w_std = sqrt(E ||w - w_avg||^2) over n mapped z (the projector's scale for latent noise)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.config.style_dim, generator=g).to(generator.w_avg.device)
    w = generator.mapping(z)
    return float((w - generator.w_avg).square().sum(1).mean().sqrt())


def project(generator, target: torch.Tensor, *, config: InversionConfig = InversionConfig(), identity=None,
            progress: ProgressFn | None = None) -> InversionResult:
    """Optimize W+ so that generator.synthesis(w_plus) reproduces target img [N,3,H,W] in [-1,1]."""
    if target.ndim != 4 or target.shape[1] != 3:
        raise InputError(f"target must be an image batch [N,3,H,W], got {list(target.shape)}")
    device = generator.w_avg.device
    target = target.to(device=device, dtype=torch.float32)
    n = target.shape[0]
    w_std = w_spread(generator, seed=config.seed)
    rows = 1 if config.space == "w" else generator.num_ws  # W: one w, broadcast to every layer
    w_opt = generator.w_avg.reshape(1, 1, -1).repeat(n, rows, 1).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt], lr=config.lr, betas=(0.9, 0.999))
    rng = torch.Generator(device="cpu").manual_seed(config.seed)
    target_emb = identity.embed(target).detach() if identity is not None else None
    losses = []
    for step in range(config.steps):
        t = step / config.steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config.steps, config)
        noise_scale = w_std * config.initial_noise_factor * max(0.0, 1.0 - t / config.noise_ramp) ** 2
        w_noise = torch.randn(w_opt.shape, generator=rng).to(device) * noise_scale
        w_plus = (w_opt + w_noise).expand(n, generator.num_ws, -1)
        img = generator.synthesis(w_plus, noise_mode="const")
        loss = multiscale_mse(img, target, size=config.loss_size, levels=config.pyramid_levels)
        if target_emb is not None and config.lambda_id > 0:
            loss = loss + config.lambda_id * identity_loss(identity.embed(img), target_emb)
        if config.lambda_delta > 0 and rows > 1:
            loss = loss + config.lambda_delta * (w_opt - w_opt.mean(1, keepdim=True)).square().sum((1, 2))
        loss = loss.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()) / n)
        if progress is not None:
            progress(step + 1, config.steps)
    w_plus = w_opt.detach().expand(n, generator.num_ws, -1).contiguous()
    with torch.no_grad():
        recon = generator.synthesis(w_plus, noise_mode="const")
    return InversionResult(w_plus, recon, "optimization", losses)


# ---- e4e ---------------------------------------------------------------------------------------------
def load_e4e(path: str | Path, *, device: str | torch.device = "cpu"):
    """The e4e encoder of a published checkpoint (`e4e_ffhq_encode.pt`: {'state_dict': {'encoder.*',
    'decoder.*'}, 'latent_avg', 'opts'}), read with weights_only and loaded strictly. The module is built on
    the meta device and takes the loaded tensors as they are (no second copy of ~1 GB)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such encoder checkpoint")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as e:  # unpickling refused, truncated archive, not a torch file ...
        raise CheckpointError(f"{path}: cannot read the encoder checkpoint ({' '.join(str(e).split())[:300]})") \
            from None
    from styleclip.util.checks import reading

    with reading(path, "encoder checkpoint"):
        model = _e4e_from_checkpoint(ckpt, path)
    model.source_path = str(path)  # lets the inversion cache key on the file instead of hashing 1 GB
    return model.eval().requires_grad_(False).to(device)


def _e4e_from_checkpoint(ckpt, path: Path):
    from styleclip.util.checks import file_tensors
    from styleclip.nets.e4e import Encoder4Editing

    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state).__name__}, not a dict")
    enc = {k[len("encoder."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("encoder.")}
    if not enc:
        raise CheckpointError(f"{path}: no 'encoder.*' weights: not an e4e checkpoint")
    num_styles = len({k.split(".")[1] for k in enc if k.startswith("styles.")})
    latent_avg = ckpt.get("latent_avg")
    if not isinstance(latent_avg, torch.Tensor) or latent_avg.ndim == 0:
        raise CheckpointError(f"{path}: no 'latent_avg' (an e4e checkpoint trained with start_from_latent_avg "
                              f"is expected)")
    file_tensors({**enc, "latent_avg": latent_avg}, str(path))
    if not 2 <= num_styles <= 24:
        raise CheckpointError(f"{path}: {num_styles} style heads; e4e has 2 log2(size) - 2 (18 at 1024 px)")
    latent_avg = latent_avg.reshape(-1, latent_avg.shape[-1]).expand(num_styles, -1).float().clone()
    size = 2 ** ((num_styles + 2) // 2)
    with torch.device("meta"):
        model = Encoder4Editing(stylegan_size=size, style_dim=latent_avg.shape[-1])
    try:
        model.load_state_dict({**enc, "latent_avg": latent_avg}, strict=True, assign=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: encoder weights do not match e4e IR-SE50 "
                              f"({' '.join(str(e).split())[:400]})") from None
    return model


def default_encoder(generator, path: str | Path | None = None, *, device: str | torch.device = "cpu"):
    """The e4e encoder to use: `path` when given; else the registry's e4e-ffhq-encode when it is present
    and fits the generator (W+ [18,512]); else None (invert by optimization)."""
    if path is not None:
        return load_e4e(path, device=device)
    if generator.num_ws != 18 or generator.config.style_dim != 512:
        return None
    found = pretrained.find("e4e-ffhq-encode")
    return load_e4e(found, device=device) if found is not None else None


@torch.no_grad()
def encode(encoder, aligned: Image.Image, generator) -> InversionResult:
    """One e4e pass on an aligned face (resized to 256) -> W+ and its reconstruction."""
    if encoder.num_ws != generator.num_ws or encoder.latent_avg.shape[-1] != generator.config.style_dim:
        raise InputError(f"the encoder predicts W+ [{encoder.num_ws},{encoder.latent_avg.shape[-1]}] but the "
                         f"generator takes [{generator.num_ws},{generator.config.style_dim}]")
    device = next(encoder.parameters()).device
    w_plus = encoder(from_pil(aligned, E4E_INPUT_SIZE).to(device)).to(generator.w_avg.device)
    recon = generator.synthesis(w_plus, noise_mode="const")
    return InversionResult(w_plus, recon, "e4e")


# ---- photos and the cache -------------------------------------------------------------------------
def cache_key(aligned: Image.Image, generator, settings: dict) -> str:
    """The inversion cache key: the aligned crop's pixels, the generator's fingerprint and the settings."""
    h = hashlib.sha256()
    h.update(f"{aligned.mode}|{aligned.size}".encode())
    h.update(aligned.tobytes())
    h.update(generator_fingerprint(generator).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cache_path(key: str) -> Path:
    return cache.cache_path("inversion", key, suffix=".pt")


def cached_inversion_path(aligned: Image.Image, generator, *, config: InversionConfig = InversionConfig(),
                          encoder=None, identity=None) -> Path:
    """Where `invert_aligned` caches this inversion (it exists when an earlier run did the same one)."""
    if encoder is not None:
        settings = {"method": "e4e", "encoder": encoder_fingerprint(encoder)}
    else:
        settings = {"method": "optimization", "config": dataclasses.asdict(config),
                    "identity": identity_fingerprint(identity) if isinstance(identity, torch.nn.Module)
                    else type(identity).__name__ if identity is not None else None}
    return cache_path(cache_key(aligned, generator, settings))


def invert_aligned(aligned: Image.Image, generator, *, config: InversionConfig = InversionConfig(),
                   encoder=None, identity=None, progress: ProgressFn | None = None,
                   use_cache: bool = True) -> InversionResult:
    """W+ of an aligned face crop: e4e when an encoder is given, else the projector; cached on disk."""
    path = cached_inversion_path(aligned, generator, config=config, encoder=encoder, identity=identity) \
        if use_cache else None
    if path is not None and path.is_file():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            w_plus = entry["w_plus"].to(generator.w_avg.device)
            with torch.no_grad():
                recon = generator.synthesis(w_plus, noise_mode="const")
            if progress is not None:
                progress(1, 1)
            return InversionResult(w_plus, recon, entry["method"], list(entry.get("losses", [])), cached=True)
        except Exception:
            path.unlink(missing_ok=True)  # a broken entry: invert again
    if encoder is not None:
        result = encode(encoder, aligned, generator)
        if progress is not None:
            progress(1, 1)
    else:
        target = from_pil(aligned, generator.config.size)
        result = project(generator, target, config=config, identity=identity, progress=progress)
    if path is not None and bool(torch.isfinite(result.w_plus).all()):  # never cache a diverged inversion
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save({"w_plus": result.w_plus.cpu(), "method": result.method, "losses": result.losses}, tmp)
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache must not stop the inversion
    return result


def invert_photo(path: str | Path, generator, *, face_index: int | None = None,
                 config: InversionConfig = InversionConfig(), encoder=None, identity=None,
                 progress: ProgressFn | None = None, use_cache: bool = True, detector=None):
    """photo -> (w_plus [1,num_ws,D], aligned PIL crop at the generator's size, reconstruction [1,3,H,W]).

    The face (largest by default, or `face_index` as listed by `styleclip faces`) is FFHQ-aligned, then
    inverted with `encoder` (an e4e module from `load_e4e`) when given, else by optimization."""
    from styleclip.photo.faces import align_photo

    aligned = align_photo(path, size=generator.config.size, face_index=face_index, detector=detector).image
    result = invert_aligned(aligned, generator, config=config, encoder=encoder, identity=identity,
                            progress=progress, use_cache=use_cache)
    return result.w_plus, aligned, result.reconstruction


def save_inversion(out_dir: str | Path, w_plus: torch.Tensor, aligned: Image.Image,
                   reconstruction: torch.Tensor) -> dict[str, Path]:
    """Write latent.pt, aligned.png, reconstruction.png and side_by_side.png into out_dir."""
    from styleclip.util.imaging import grid, to_pil, upscale_for_viewing

    from styleclip.util.checks import finite_tensors
    from styleclip.util.outputs import Outputs

    finite_tensors([w_plus, reconstruction], "the inversion")
    out = Path(out_dir)
    paths = {"latent": out / "latent.pt", "aligned": out / "aligned.png",
             "reconstruction": out / "reconstruction.png", "side_by_side": out / "side_by_side.png"}
    size = reconstruction.shape[-1]
    pair = torch.cat([from_pil(aligned, size), reconstruction[:1].detach().cpu().float()])
    with Outputs() as files:
        files.torch(w_plus.detach().cpu(), paths["latent"])
        files.image(aligned, paths["aligned"])
        files.image(to_pil(reconstruction[0]), paths["reconstruction"])
        files.image(upscale_for_viewing(grid(pair)), paths["side_by_side"])
    return paths
