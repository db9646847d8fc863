"""The weight registry: what each known weight is, where it comes from, and where it lives on disk.

Only this module knows directories, URLs and hashes. Resolution order for a weight file:
explicit path > $STYLECLIP_WEIGHTS_DIR > the user cache (~/.cache/styleclip) > ./weights.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from styleclip.errors import WeightsMissingError
from styleclip.store.cache import cache_dir, cache_folder, cache_path


@dataclass(frozen=True)
class WeightSpec:
    """One published weight file."""

    name: str
    filename: str
    kind: str  # generator | clip | identity | mapper | encoder | relevance
    urls: tuple[str, ...] = ()
    size: int | None = None
    sha256: str | None = None
    licence: str = ""
    non_commercial: bool = False
    description: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSet:
    """What `--model NAME` selects: a generator, a CLIP model and an identity network."""

    name: str
    generator: str
    clip: str
    identity: str | None
    description: str = ""
    builtin: bool = False  # built in code (no download)


def _drive(file_id: str) -> str:
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained"
_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files"
_NGC3 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files"
_TF = "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks"
_FACENET = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9"
_LIC_NV = "Nvidia Source Code License-NC"
_LIC_ADA = "NVIDIA Source Code License for StyleGAN2 with ADA (non-commercial)"
_LIC_SG3 = "NVIDIA Source Code License for StyleGAN3 (non-commercial)"
_LIC_DERIVED = "MIT code; embeds the NVIDIA-derived FFHQ generator (Nvidia Source Code License-NC)"
_LIC_CELEBA = "derived from CelebA-HQ (non-commercial research dataset terms)"


REGISTRY: dict[str, WeightSpec] = {s.name: s for s in [
    WeightSpec("stylegan2-ffhq-1024", "stylegan2-ffhq-config-f.pt", "generator",
               urls=(_drive("1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"),),
               size=381_462_551, sha256="bae494ef77e32a9cd1792a81a3c167692a0e64f6bcd8b06592ff42917e2ed46e",
               licence="Nvidia Source Code License-NC (converted by rosinality)", non_commercial=True,
               description="StyleGAN2 FFHQ 1024 config-f, rosinality layout (what StyleCLIP uses)"),
    WeightSpec("e4e-ffhq-encode", "e4e_ffhq_encode.pt", "encoder",
               urls=(_drive("1cUv_reLE6k3604or78EranS7XzuVMWeO"), _drive("1O8OLrVNOItOJoNGMyQ8G8YRTeTYEfs0P")),
               size=1_201_649_680, sha256="2ace1d9a8c05c10a399bcd500b8dda118f759ff1aac89dbdab7435f2136a0999",
               licence="MIT code; contains the NVIDIA-derived FFHQ decoder (NC)", non_commercial=True,
               description="e4e encoder for FFHQ 1024 (photo -> W+ [18,512] in one pass)"),
    # ---- NVIDIA StyleGAN2-ADA-PyTorch pickles (read by convert.py's restricted unpickler) -------------------
    *[WeightSpec(f"stylegan2-ada-{d}-{r}", f"{d}.pkl", "generator", urls=(f"{_ADA}/{d}.pkl",),
                 licence=_LIC_ADA, non_commercial=True, description=desc,
                 extra={"format": "nvidia-pkl", "resolution": r, "approx_size": "~380 MB"})
      for d, r, desc in [
          ("ffhq", 1024, "FFHQ 1024 (trained with original StyleGAN2), NVIDIA stylegan2-ada-pytorch pickle"),
          ("metfaces", 1024, "MetFaces 1024 (ADA, transfer from FFHQ)"),
          ("afhqcat", 512, "AFHQ Cat 512 (ADA)"), ("afhqdog", 512, "AFHQ Dog 512 (ADA)"),
          ("afhqwild", 512, "AFHQ Wild 512 (ADA)"), ("brecahad", 512, "BreCaHAD 512 (ADA)")]],
    WeightSpec("stylegan2-ada-cifar10-32", "cifar10.pkl", "generator", urls=(f"{_ADA}/cifar10.pkl",),
               licence=_LIC_ADA, non_commercial=True, description="CIFAR-10 32 (class-conditional)",
               extra={"format": "nvidia-pkl", "resolution": 32,
                      "unsupported": "class-conditional generator (c_dim > 0)"}),
    # ---- NVIDIA NGC StyleGAN2 pickles (stylegan3 repo) ------------------------------------------------------
    *[WeightSpec(f"stylegan2-ngc-{d}-{r}", f"stylegan2-{d}-{r}x{r}.pkl", "generator",
                 urls=(f"{_NGC}/stylegan2-{d}-{r}x{r}.pkl",), licence=_LIC_SG3, non_commercial=True,
                 description=f"StyleGAN2 {d} {r}x{r}, NVIDIA NGC pickle",
                 extra={"format": "nvidia-pkl", "resolution": r, **({"approx_size": a} if a else {}),
                        **({"unsupported": "class-conditional generator (c_dim > 0)"} if d == "cifar10" else {})})
      for d, r, a in [("ffhq", 1024, "~382 MB"), ("ffhq", 512, "~364 MB"), ("ffhq", 256, None),
                      ("ffhqu", 1024, None), ("ffhqu", 256, None), ("metfaces", 1024, None),
                      ("metfacesu", 1024, None), ("afhqv2", 512, None), ("afhqcat", 512, None),
                      ("afhqdog", 512, None), ("afhqwild", 512, None), ("brecahad", 512, None),
                      ("celebahq", 256, None), ("lsundog", 256, None), ("cifar10", 32, None)]],
    # ---- official TensorFlow StyleGAN2 pickles: listed for reference, not readable here --------------------
    *[WeightSpec(f"stylegan2-tf-{d}-{r}", f"stylegan2-{d}-config-f.pkl", "generator",
                 urls=(f"{_TF}/stylegan2-{d}-config-f.pkl",), licence=_LIC_NV, non_commercial=True,
                 description=f"official TF StyleGAN2 {desc}",
                 extra={"format": "tf-pkl", "resolution": r,
                        "unsupported": "TensorFlow pickle; convert it to rosinality .pt first"})
      for d, r, desc in [("ffhq", 1024, "FFHQ 1024"), ("car", 512, "LSUN Car 512 (512x384 content)"),
                         ("cat", 256, "LSUN Cat 256"), ("church", 256, "LSUN Church 256"),
                         ("horse", 256, "LSUN Horse 256")]],
    # ---- CLIP ------------------------------------------------------------------------------------------------
    WeightSpec("clip-vit-b32-openai", "open_clip_vit_b32_openai.bin", "clip",
               urls=("https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/main/"
                     "open_clip_pytorch_model.bin",),
               licence="MIT (OpenAI CLIP; model card: deployed use out of scope)",
               description="OpenAI CLIP ViT-B/32 as open_clip ('ViT-B-32-quickgelu', 'openai'); open_clip "
                           "downloads and caches it itself (Hugging Face hub) unless this file is present",
               extra={"format": "open_clip", "open_clip": ("ViT-B-32-quickgelu", "openai"),
                      "hf_hub": "timm/vit_base_patch32_clip_224.openai", "approx_size": "~605 MB"}),
    WeightSpec("clip-vit-b32-openai-jit", "ViT-B-32.pt", "clip",
               urls=("https://openaipublic.azureedge.net/clip/models/"
                     "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",),
               sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
               licence="MIT (OpenAI CLIP)", description="OpenAI's original TorchScript release (fp16)",
               extra={"format": "torchscript",
                      "unsupported": "TorchScript archive; styleclip loads the open_clip copy (clip-vit-b32-openai)"}),
    # ---- identity nets -----------------------------------------------------------------------------------------
    WeightSpec("arcface-ir-se50", "model_ir_se50.pth", "identity",
               urls=(_drive("1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn"), _drive("1N0MZSqPRJpLfP4mFQCS14ikrVSe8vQlL")),
               size=175_367_323, sha256="a035c768259b98ab1ce0e646312f48b9e1e218197a0f80ac6765e88f8b6ddf28",
               licence="MIT (TreB1eN InsightFace_Pytorch); trained on MS1M (research-only dataset terms)",
               non_commercial=True, description="ArcFace IR-SE50 (StyleCLIP's identity loss)",
               extra={"manual": ("https://1drv.ms/u/s!AhMqVPD44cDOhkPsOU2S_HFpY9dC",
                                 "https://pan.baidu.com/s/12BUjjwy1uUTEF9HCx5qvoQ")}),
    WeightSpec("facenet-vggface2", "20180402-114759-vggface2.pt", "identity",
               urls=(f"{_FACENET}/20180402-114759-vggface2.pt",),
               licence="MIT (facenet-pytorch, weights from davidsandberg/facenet); VGGFace2 dataset terms apply",
               description="FaceNet InceptionResnetV1 trained on VGGFace2 (alternative identity net)",
               extra={"torch_hub": True, "approx_size": "~107 MB"}),
    WeightSpec("facenet-casia-webface", "20180408-102900-casia-webface.pt", "identity",
               urls=(f"{_FACENET}/20180408-102900-casia-webface.pt",),
               licence="MIT (facenet-pytorch); CASIA-WebFace dataset terms apply",
               description="FaceNet InceptionResnetV1 trained on CASIA-WebFace",
               extra={"torch_hub": True, "approx_size": "~111 MB"}),
    # ---- more e4e encoders (e4e-ffhq-encode is above) ------------------------------------------------------------
    *[WeightSpec(f"e4e-{d}-encode", f"e4e_{d}_encode.pt", "encoder", urls=(_drive(i),), licence=_LIC_DERIVED,
                 non_commercial=True, description=f"encoder4editing {d}")
      for d, i in [("cars", "17faPqBce2m1AQeLCLHUVXaDfxMRU2QcV"), ("horse", "1TkLLnuX86B_BMo2ocYD0kX9kWh53rUVX"),
                   ("church", "1-L0ZdnQLwtdy6-A_Ccgq5uNJGTqE7qBa")]],
    WeightSpec("dlib-landmarks-68", "shape_predictor_68_face_landmarks.dat.bz2", "landmarks",
               urls=("http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2",),
               licence="trained on iBUG 300-W (commercial use restricted, reported)", non_commercial=True,
               description="dlib 68-landmark predictor for FFHQ alignment (bz2; e4e's alignment recipe)",
               extra={"approx_size": "~64 MB"}),
    # ---- StyleCLIP latent mappers (14 published) and latents -------------------------------------------------
    *[WeightSpec(f"mapper-{n.replace('_', '-')}", f"{n}.pt", "mapper", urls=(_drive(i),), licence=_LIC_DERIVED,
                 non_commercial=True, description=f"StyleCLIP latent mapper '{n.replace('_', ' ')}'",
                 extra={"no_fine_mapper": nf, "approx_size": "~141 MB" if nf else "~146 MB"})
      for n, i, nf in [
          ("afro", "1i5vAqo4z0I-Yon3FNft_YZOq7ClWayQJ", True),
          ("angry", "1g82HEH0jFDrcbCtn3M22gesWKfzWV_ma", True),
          ("beyonce", "1KJTc-h02LXs4zqCyo7pzCp0iWeO6T9fz", False),
          ("bobcut", "1IvyqjZzKS-vNdq_OhwapAcwrxgLAY8UF", True),
          ("bowlcut", "1xwdxI2YCewSt05dEHgkpmmzoauPjEnnZ", True),
          ("curly_hair", "1xZ7fFB12Ci6rUbUfaHPpo44xUFzpWQ6M", True),
          ("depp", "1FPiJkvFPG_y-bFanxLLP91wUKuy-l3IV", False),
          ("hilary_clinton", "1X7U2zj2lt0KFifIsTfOOzVZXqYyCWVll", False),
          ("mohawk", "1oMMPc8iQZ7dhyWavZ7VNWLwzf9aX4C09", True),
          ("purple_hair", "14H0CGXWxePrrKIYmZnDD2Ccs65EEww75", False),
          ("surprised", "1F-mPrhO-UeWrV1QYMZck63R43aLtPChI", True),
          ("taylor_swift", "10jHuHsKKJxuf3N0vgQbX_SMEQgFHDrZa", False),
          ("trump", "14v8D0uzy4tOyfBU3ca9T0AzTt3v-dNyh", False),
          ("zuckerberg", "1NjDcMUL8G-pO3i_9N6EPpQNXeMc3Ar1r", False)]],
    WeightSpec("example-celebs", "example_celebs.pt", "latents", urls=(_drive("1VL3lP4avRhz75LxSza6jgDe-pHd2veQG"),),
               licence=_LIC_CELEBA, non_commercial=True, description="e4e-inverted W+ latents of example celebrities"),
    WeightSpec("celeba-hq-latents-train", "train_faces.pt", "latents",
               urls=(_drive("1gof8kYc_gDLUT4wQlmUdAtPnQIlCO26q"),), licence=_LIC_CELEBA, non_commercial=True,
               description="e4e W+ latents of CelebA-HQ train images (mapper training set)"),
    WeightSpec("celeba-hq-latents-test", "test_faces.pt", "latents",
               urls=(_drive("1j7RIfmrCoisxx3t-r-KC02Qc8barBecr"),), licence=_LIC_CELEBA, non_commercial=True,
               description="e4e W+ latents of CelebA-HQ test images"),
    # ---- NVIDIA NGC StyleGAN3 pickles (configs T and R; read by store/nvidia_sg3.py). No published sizes or
    # hashes (WEIGHTS.md lists none): like the other NGC entries they are unverified (sha256 None).
    *[WeightSpec(f"stylegan3-{c}-{d}-{r}", f"stylegan3-{c}-{d}-{r}x{r}.pkl", "generator",
                 urls=(f"{_NGC3}/stylegan3-{c}-{d}-{r}x{r}.pkl",), licence=_LIC_SG3, non_commercial=True,
                 description=f"StyleGAN3-{c.upper()} {desc} {r}x{r}, NVIDIA NGC pickle",
                 extra={"format": "nvidia-pkl", "architecture": "stylegan3", "config": c, "resolution": r})
      for c in ("t", "r")
      for d, r, desc in [("ffhq", 1024, "FFHQ"), ("ffhqu", 256, "FFHQ-U (unaligned)"),
                         ("ffhqu", 1024, "FFHQ-U (unaligned)"), ("metfaces", 1024, "MetFaces"),
                         ("metfacesu", 1024, "MetFaces-U (unaligned)"), ("afhqv2", 512, "AFHQv2")]],
]}

MODEL_SETS: dict[str, ModelSet] = {m.name: m for m in [
    ModelSet("ffhq", "stylegan2-ffhq-1024", "clip-vit-b32-openai", "arcface-ir-se50",
             "StyleGAN2 FFHQ 1024 + OpenAI CLIP ViT-B/32 + ArcFace IR-SE50 (downloads ~1 GB)"),
    ModelSet("debug", "debug", "debug", "debug", "tiny random networks (32 px) for tests and smoke runs",
             builtin=True),
    ModelSet("toy-faces", "toy-faces", "toy-faces", "toy-faces",
             "embedded toy cartoon faces (64 px): generator, CLIP and identity net trained by this project, "
             "shipped in the package, works offline", builtin=True),
]}

DEFAULT_MODEL = "ffhq"
FALLBACK_MODEL = "toy-faces"  # what runs when the default model's weights are absent and cannot be fetched


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("STYLECLIP_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["STYLECLIP_WEIGHTS_DIR"]))
    dirs += [cache_dir(), Path("weights")]
    return dirs


def get_spec(name: str) -> WeightSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        import difflib

        if name in MODEL_SETS:
            ms = MODEL_SETS[name]
            weights = [w for w in (ms.generator, ms.clip, ms.identity) if w in REGISTRY]
            raise WeightsMissingError(f"{name!r} is a model set, not one weight" + (
                f" (its weights: {', '.join(weights)})" if weights else " (built in, no weight files)")) from None
        close = [c for c in difflib.get_close_matches(name, list(REGISTRY) + list(MODEL_SETS), n=3) if c != name]
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise WeightsMissingError(f"unknown weight name {name!r}; {hint}"
                                  f"`styleclip weights list` shows the known names") from None


def get_model_set(name: str) -> ModelSet:
    try:
        return MODEL_SETS[name]
    except KeyError:
        raise WeightsMissingError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_SETS))}") from None


def find(name: str) -> Path | None:
    """The first existing file for weight `name` in the search directories, or None."""
    spec = get_spec(name)
    dirs = search_dirs()
    if spec.extra.get("torch_hub"):  # facenet-pytorch's own download location
        dirs.append(_torch_hub_dir() / "checkpoints")
    for d in dirs:
        p = d / spec.filename
        if p.is_file():
            return p
    return None


def resolve(name: str) -> Path:
    """Path of weight `name`; a clear WeightsMissingError (where it looked, how to get it) when absent."""
    path = find(name)
    if path is not None:
        return path
    spec = get_spec(name)
    where = ", ".join(str(d) for d in search_dirs())
    url = f" from {spec.urls[0]}" if spec.urls else ""
    raise WeightsMissingError(
        f"weight '{name}' ({spec.filename}) is not present (looked in: {where}); "
        f"run `styleclip weights download {name}` or download it{url} and put it in one of those folders, "
        f"or pass its path")


def converted_path(source: Path) -> Path:
    """Where the safetensors conversion of a foreign checkpoint is cached (keyed by path, size, mtime)."""
    from styleclip.util.fingerprint import file_fingerprint

    return cache_path("converted", source.stem, file_fingerprint(source), suffix=".safetensors")


# ---- download ------------------------------------------------------------------------------------------------
USER_AGENT = "styleclip-weights/0.1 (+https://github.com/)"
CHUNK = 1 << 20
OFFLINE_REASON = "STYLECLIP_OFFLINE is set"


def _torch_hub_dir() -> Path:
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return Path(home)


def offline() -> bool:
    """True when $STYLECLIP_OFFLINE is set (1/true/yes): `ensure` then never touches the network."""
    return os.environ.get("STYLECLIP_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def download_dir() -> Path:
    """Where downloads go by default: $STYLECLIP_WEIGHTS_DIR if set, else the user cache."""
    env = os.environ.get("STYLECLIP_WEIGHTS_DIR")
    return Path(env) if env else cache_dir()


def sha256_file(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def ensure(name: str, *, progress: bool = True) -> Path:
    """Path of weight `name`, downloading it into `download_dir()` when absent. Offline, unreachable or
    corrupt: one WeightsMissingError naming the file, the URLs tried and the folders where to put it."""
    path = find(name)
    if path is not None:
        return path
    spec = get_spec(name)
    if spec.extra.get("unsupported"):
        raise WeightsMissingError(f"weight '{name}' ({spec.filename}) cannot be used: {spec.extra['unsupported']}")
    if offline():
        raise WeightsMissingError(_missing_message(spec, [OFFLINE_REASON]))
    return download(name, progress=progress)


def download(name: str, dest_dir: str | Path | None = None, progress: bool = True, *,
             urls: tuple[str, ...] | None = None, timeout: float = 30.0, retries: int = 4,
             replace: bool = False) -> Path:
    """Download weight `name` into `dest_dir` (default `download_dir()`) and return its path.

    Mirrors are tried in order. Each URL streams into `<file>.partial`; a cut connection is resumed with an
    HTTP Range request (up to `retries` times while bytes keep arriving). Size and sha256 (where published)
    are checked before the atomic rename; a mismatch deletes the partial file. Google Drive "can't scan for
    viruses" pages are followed through their confirmation form. Already present in `dest_dir`: no download
    (unless `replace`: a corrupt file is replaced only once a good copy has arrived). With STYLECLIP_OFFLINE
    set: a WeightsMissingError, no network.
    """
    spec = get_spec(name)
    dest = Path(dest_dir if dest_dir is not None else download_dir()) / spec.filename
    if dest.is_file() and not replace:
        return dest
    if offline():
        raise WeightsMissingError(_missing_message(spec, [OFFLINE_REASON]))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsMissingError(f"cannot create the download folder {dest.parent}: {e.strerror or e}") from None
    partial = dest.with_name(dest.name + ".partial")
    clean_partials(dest.parent, keep=partial)
    failures = []
    for url in urls if urls is not None else spec.urls:
        try:
            _fetch_resuming(url, partial, desc=spec.filename, progress=progress, timeout=timeout, retries=retries)
            _check(partial, spec)
        except _DownloadFailed as e:
            failures.append(f"{url}: {e}")
            continue
        os.replace(partial, dest)
        return dest
    raise WeightsMissingError(_missing_message(spec, failures or ["no download URL known"]))


PARTIAL_MAX_AGE_S = 7 * 24 * 3600.0


def clean_partials(folder: Path, *, keep: Path | None = None, max_age_s: float = PARTIAL_MAX_AGE_S) -> list[Path]:
    """Remove `*.partial` files that killed downloads left in `folder` and no download resumed for a week
    (`keep`: the one about to be resumed). Returns what was removed."""
    import time

    removed = []
    for p in folder.glob("*.partial") if folder.is_dir() else []:
        try:
            if p != keep and time.time() - p.stat().st_mtime > max_age_s:
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


def _missing_message(spec: WeightSpec, failures: list[str]) -> str:
    where = ", ".join(str(d) for d in search_dirs())
    manual = spec.extra.get("manual", ())
    also = f"; other sources: {', '.join(manual)}" if manual else ""
    if failures == [OFFLINE_REASON]:
        tried = f"not downloaded: {OFFLINE_REASON}; sources: {', '.join(spec.urls)}"
    else:
        tried = "tried " + "; ".join(failures)
    return (f"weight '{spec.name}' ({spec.filename}) is missing and could not be downloaded "
            f"({tried}){also}. Download it by hand and put {spec.filename} in one of: "
            f"{where} (or set STYLECLIP_WEIGHTS_DIR, or pass the file's path)")


class _DownloadFailed(Exception):
    """One URL did not deliver a good file (the reason is the message)."""


class _Incomplete(_DownloadFailed):
    """The connection ended before the announced length; the .partial file can be resumed."""


def _check(partial: Path, spec: WeightSpec) -> None:
    size = partial.stat().st_size
    if spec.size is not None and size != spec.size:
        partial.unlink()
        raise _DownloadFailed(f"size {size} bytes, expected {spec.size}; file discarded")
    if spec.sha256:
        digest = sha256_file(partial)
        if digest != spec.sha256.lower():
            partial.unlink()
            raise _DownloadFailed(f"sha256 mismatch (got {digest}, expected {spec.sha256}); file discarded")


def _fetch_resuming(url: str, partial: Path, *, desc: str, progress: bool, timeout: float, retries: int) -> None:
    attempt = 0
    while True:
        before = partial.stat().st_size if partial.exists() else 0
        try:
            _fetch(url, partial, desc=desc, progress=progress, timeout=timeout)
            return
        except _Incomplete:
            got = partial.stat().st_size if partial.exists() else 0
            attempt += 1
            if attempt > retries or got <= before:
                raise


def _fetch(url: str, partial: Path, *, desc: str, progress: bool, timeout: float, max_pages: int = 3) -> None:
    """Stream `url` into `partial`, resuming from its current size; follows Drive confirmation pages."""
    import http.client
    import urllib.error
    import urllib.request

    from tqdm.auto import tqdm

    for _ in range(max_pages + 1):
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # the partial is already complete (or stale): start over
                partial.unlink()
                continue
            raise _DownloadFailed(f"HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise _DownloadFailed(f"unreachable ({' '.join(str(reason).split())})") from None
        with resp:
            if resp.headers.get_content_type() == "text/html":  # weights are never HTML: a Drive warning page
                page = resp.read(4 << 20).decode("utf-8", "replace")
                nxt = drive_confirm_url(page, resp.geturl())
                if nxt is None:
                    raise _DownloadFailed("got a web page instead of the file (quota exceeded, permission "
                                          "denied or file moved)")
                url = nxt
                continue
            resumed = offset > 0 and resp.status == 206
            if not resumed:
                offset = 0
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            got = offset
            try:
                with open(partial, "ab" if resumed else "wb") as f, \
                        tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=desc, disable=not progress, leave=False) as bar:
                    while True:
                        chunk = resp.read(CHUNK)
                        if not chunk:
                            break
                        f.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as e:
                raise _Incomplete(f"connection lost after {got} bytes ({type(e).__name__})") from None
            if total is not None and got < total:
                raise _Incomplete(f"connection closed after {got} of {total} bytes")
            return
    raise _DownloadFailed("too many confirmation pages")


def drive_confirm_url(page: str, base_url: str) -> str | None:
    """The URL behind a Google Drive "can't scan this file for viruses" page: its download form (action +
    hidden inputs such as id, export, confirm, uuid), else a link carrying `confirm=`. None if neither."""
    from html.parser import HTMLParser
    from urllib.parse import urlencode, urljoin

    class Forms(HTMLParser):
        def __init__(self):
            super().__init__()
            self.forms: list[tuple[str, dict]] = []
            self.links: list[str] = []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "form":
                self.forms.append((a.get("action") or base_url, {}))
            elif tag == "input" and self.forms and a.get("name"):
                self.forms[-1][1][a["name"]] = a.get("value") or ""
            elif tag == "a" and "confirm=" in (a.get("href") or ""):
                self.links.append(a["href"])

    parser = Forms()
    parser.feed(page)
    for action, fields in parser.forms:
        if "confirm" in fields or "uuid" in fields:
            return urljoin(base_url, action) + "?" + urlencode(fields)
    if parser.links:
        return urljoin(base_url, parser.links[0])
    return None


# ---- listing and verification ---------------------------------------------------------------------------------
def expand_names(names: list[str]) -> list[str]:
    """Registry names from weight names and model-set names (a set stands for its downloadable weights)."""
    out: list[str] = []
    for n in names:
        if n in MODEL_SETS and n not in REGISTRY:
            ms = MODEL_SETS[n]
            out += [w for w in (ms.generator, ms.clip, ms.identity) if w in REGISTRY]
        else:
            get_spec(n)
            out.append(n)
    return list(dict.fromkeys(out))


def human_size(spec: WeightSpec) -> str:
    if spec.size is None:
        return spec.extra.get("approx_size", "?")
    n = float(spec.size)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def integrity_problem(name: str, path: Path) -> str | None:
    """Size or sha256 mismatch of a present file against the registry (None: matches, or nothing published)."""
    spec = get_spec(name)
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        return f"size mismatch ({size} bytes, expected {spec.size})"
    if spec.sha256:
        digest = sha256_file(path)
        if digest != spec.sha256.lower():
            return f"MISMATCH (sha256 {digest}, expected {spec.sha256})"
    return None


def verify(names: list[str] | None = None, *, validate=None) -> list[tuple[str, Path, str]]:
    """(name, path, status) for every present weight (or the given ones): status 'ok' (sha256 matches),
    'size mismatch ...' or 'MISMATCH ...'. Files without a published sha256 are checked by
    `validate(name, path) -> problem or None` (does it load as its kind): 'ok (loads; no published sha256)' or
    'CORRUPT (...)'; without `validate`, 'present (no published sha256)'."""
    rows = []
    for name in names if names is not None else sorted(REGISTRY):
        spec = get_spec(name)
        path = find(name)
        if path is None:
            continue
        status = integrity_problem(name, path)
        if status is None and spec.sha256:
            status = "ok"
        elif status is None:
            problem = validate(name, path) if validate is not None else ""
            status = ("present (no published sha256)" if validate is None else
                      "ok (loads; no published sha256)" if problem is None else f"CORRUPT ({problem})")
        rows.append((name, path, status))
    return rows


def missing_message(name: str, failures: list[str]) -> str:
    """The one-line 'missing weight' message: file, what was tried, where to put it."""
    return _missing_message(get_spec(name), failures)


def find_in_hf_cache(name: str) -> Path | None:
    """A copy of an open_clip weight already in the Hugging Face hub cache (open_clip's own download, in
    styleclip's cache folder or the default HF cache), or None."""
    repo = get_spec(name).extra.get("hf_hub")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    if not repo:
        return None
    for cache in (str(cache_folder("open_clip")), None):
        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, filename, cache_dir=cache)
            if isinstance(hit, str) and os.path.isfile(hit):
                return Path(hit)
    return None
