"""Training a latent mapper for one prompt (SPEC 2.2-2.4), resumable.

loss = clip_lambda * mean(1 - cos(CLIP(G(w_hat)), t)) + l2_lambda * MSE(w_hat, w) + id_lambda * ID(G(w_hat), G(w))
with w_hat = w + residual_scale * M(w); only the mapper is optimised (Ranger, lr 0.5, batch 2).

Warm start: given a teacher (the text-conditioned mapper's W+ change toward the same prompt), a fresh run first
fits M to it (`distill`, MSE, a few seconds) and then takes the CLIP steps from there, so a hundred steps give a
usable mapper (toy-faces figures: docs/benchmarks.md against docs/benchmarks-mapper-start.md).

Efficiency: the generator and CLIP are frozen and the backward pass asks for the mapper's gradients only
(`backward(inputs=...)`), so no weight gradient of G or CLIP is ever computed; the source image G(w) is
needed only for the identity loss and is then rendered under no_grad once per latent and its identity
embedding cached (the training latents are a fixed set). CLIP's input is resized with the box-filter matrix,
not the official 7x nearest upsample.

Output folder: `best.safetensors` (best validation loss), `last.safetensors`, `train_state.pt` (everything
`resume` needs: step, mapper, optimizer state incl. Lookahead slow weights, the shuffling generator's state,
the current permutation), `images/step_XXXXXX.png` ([source, edited] pairs of validation latents) and
`log.jsonl`. Files are written to a temporary name and renamed into place.

Under torchrun (see `styleclip.util.distributed`) the mapper is wrapped in DistributedDataParallel: `batch_size` is
the effective (global) batch, split evenly over the processes, each taking its slice of the same permutation;
the averaged gradient is that of the whole batch, so a run is the same run on any number of processes with
the same effective batch (and `lr` is used as given: it is not scaled with the number of processes). The
training state holds nothing per process, so a run resumes exactly on another number of processes as long as
the effective batch stays the same. Rank 0 alone validates, writes files and logs.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from styleclip.util import distributed
from styleclip.util.checks import file_tensors, memory, reading
from styleclip.errors import CheckpointError, InputError, NumericalError
from styleclip.losses import clip_loss, identity_loss
from styleclip.nets.mapper import LevelsMapper
from styleclip.training.ranger import Ranger
from styleclip.types import ProgressFn
from styleclip.editors.base import report, start_or_resume
from styleclip.store.mappers import save_mapper
from styleclip.util.fingerprint import generator_fingerprint

LogFn = Callable[[int, dict], None]
"""log(step, losses): the latest training losses (and `val_*` entries after a validation)."""
Teacher = Callable[[torch.Tensor], torch.Tensor]
"""teacher(w [N,num_ws,D]) -> the W+ change [N,num_ws,D] a mapper is first fitted to (a universal mapper's)."""


@dataclass(frozen=True)
class MapperTrainConfig:
    """Defaults of the official trainer (SPEC 2.3) where it has one."""

    steps: int = 50_000
    batch_size: int = 2
    lr: float = 0.5
    optimizer: str = "ranger"  # or "adam"
    clip_lambda: float = 1.0
    l2_lambda: float = 0.8
    id_lambda: float = 0.1
    no_coarse: bool = False
    no_medium: bool = False
    no_fine: bool = False
    residual_scale: float = 0.1
    num_latents: int = 5000  # sampled training latents when no file is given (official train_dataset_size)
    num_val_latents: int = 16  # validation latents (sampled, or held out from the training file)
    truncation: float = 0.7
    val_interval: int = 2000
    save_interval: int = 2000
    image_interval: int = 2000
    log_interval: int = 50
    num_image_pairs: int = 4
    seed: int = 0
    # with a teacher (a universal mapper, `MapperTrainer(teacher=...)`): steps of fitting the mapper to the
    # teacher's W+ change before the CLIP steps (Adam, batches of distill_batch training latents)
    distill_steps: int = 1000
    distill_lr: float = 0.3
    distill_batch: int = 64

    def __post_init__(self):
        from styleclip.util.checks import integer, number, seed

        if self.optimizer not in ("ranger", "adam"):
            raise InputError(f"optimizer must be 'ranger' or 'adam', got {self.optimizer!r}")
        for name in ("steps", "batch_size", "val_interval", "save_interval", "image_interval", "log_interval",
                     "num_latents", "num_image_pairs", "distill_batch"):
            integer(getattr(self, name), name, 1 if name != "num_image_pairs" else 0,
                    1024 if name == "batch_size" else 10_000_000)
        integer(self.num_val_latents, "num_val_latents", 0, 100_000)
        integer(self.distill_steps, "distill_steps", 0, 10_000_000)
        number(self.lr, "lr", lo=0.0, hi=10.0, open_lo=True)
        number(self.distill_lr, "distill_lr", lo=0.0, hi=100.0, open_lo=True)
        for name in ("clip_lambda", "l2_lambda", "id_lambda"):
            number(getattr(self, name), name, lo=0.0, hi=1e4)
        number(self.residual_scale, "residual_scale", lo=-100.0, hi=100.0)
        number(self.truncation, "truncation", lo=-2.0, hi=2.0)
        seed(self.seed)


# settings that may change between a run and its resumption
_RESUMABLE_CHANGES = {"steps", "val_interval", "save_interval", "image_interval", "log_interval", "num_image_pairs"}


@dataclass
class TrainResult:
    mapper: LevelsMapper
    step: int
    best_val_loss: float | None
    best_path: Path | None
    last_path: Path | None
    losses: dict
    val_history: list = field(default_factory=list)


def load_latents(path: str | Path, *, num_ws: int, style_dim: int) -> torch.Tensor:
    """A latent file ([N,num_ws,D] W+ or [N,D] W tensor, e.g. e4e-inverted faces) read with weights_only."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"latent file {path} does not exist")
    with reading(path, "latent file"):
        t = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(t, dict):
        tensors = [v for v in t.values() if isinstance(v, torch.Tensor)]
        t = tensors[0] if len(tensors) == 1 else t
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{path}: expected a tensor of latents, found {type(t).__name__}")
    file_tensors({"latents": t}, str(path), what="the latents")
    memory(t.numel() * 4 * (num_ws if t.ndim == 2 else 1), f"latent file {path}")
    t = t.float()
    if t.ndim == 2 and t.shape[1] == style_dim:
        t = t.unsqueeze(1).repeat(1, num_ws, 1)
    if t.ndim != 3 or t.shape[1:] != (num_ws, style_dim):
        raise InputError(f"{path}: latents must be [N,{num_ws},{style_dim}] (or [N,{style_dim}]) for this "
                         f"generator, got {list(t.shape)}")
    if t.shape[0] == 0:
        raise InputError(f"{path}: the latent batch is empty (0 latents)")
    if not torch.isfinite(t).all():
        raise InputError(f"{path}: latents contain NaN or infinite values")
    return t


@torch.no_grad()
def sample_latents(generator, n: int, *, truncation: float = 0.7, seed: int = 0, batch: int = 256) -> torch.Tensor:
    """n W+ latents [n,num_ws,D] from z ~ N(0,I) (seeded) through the mapping network, truncated (the
    official fallback when no latent file is given, SPEC 2.4, which upstream is broken)."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.config.style_dim, generator=rng)
    dev = generator.w_avg.device
    ws = [generator.mapping(z[i:i + batch].to(dev), truncation).cpu() for i in range(0, n, batch)]
    return generator.broadcast(torch.cat(ws))


class MapperTrainer:
    """One training run. `run()` trains to `config.steps`, validating, imaging and checkpointing on the way.

    Data order: an explicit CPU torch.Generator (seeded from config.seed) draws a permutation of the training
    latents per epoch (drop-last batches, as the official DataLoader); its state and the current permutation
    are part of the checkpoint, so a resumed run sees the same batches.
    """

    def __init__(self, generator, clip, prompt: str, *, identity=None, config: MapperTrainConfig = MapperTrainConfig(),
                 latents: torch.Tensor | None = None, val_latents: torch.Tensor | None = None,
                 out_dir: str | Path | None = None, notes: dict | None = None, teacher: Teacher | None = None):
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("the prompt is empty: say what the mapper should edit toward, e.g. --prompt 'mohawk'")
        self.g, self.clip, self.identity, self.cfg = generator, clip, identity, config
        self.teacher = teacher
        self.distilled: dict | None = None  # how the distillation went (a fresh run with a teacher)
        self.prompt = prompt
        self.device = generator.w_avg.device
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.notes = dict(notes or {})
        cfg = config
        num_ws, dim = generator.num_ws, generator.config.style_dim
        if latents is None:
            both = sample_latents(generator, cfg.num_latents + (0 if val_latents is not None else cfg.num_val_latents),
                                  truncation=cfg.truncation, seed=cfg.seed)
            self.notes.setdefault("latents", f"sampled: {cfg.num_latents} from seed {cfg.seed}, "
                                             f"truncation {cfg.truncation}")
            latents, held = both[:cfg.num_latents], both[cfg.num_latents:]
        else:
            latents = latents.float().cpu()
            held = latents[:0]
            if val_latents is None:  # hold out the last rows of the file for validation
                k = min(cfg.num_val_latents, max(1, latents.shape[0] // 10)) if latents.shape[0] > 1 else 0
                latents, held = latents[:latents.shape[0] - k], latents[latents.shape[0] - k:]
        if val_latents is None:
            val_latents = held
        for name, t in (("training latents", latents), ("validation latents", val_latents)):
            if t.ndim != 3 or t.shape[1:] != (num_ws, dim):
                raise InputError(f"{name} must be [N,{num_ws},{dim}], got {list(t.shape)}")
        if latents.shape[0] < cfg.batch_size:
            raise InputError(f"{latents.shape[0]} training latents are fewer than the batch size {cfg.batch_size}")
        self.world = distributed.world()
        if cfg.batch_size % self.world.size:
            raise InputError(f"the effective batch {cfg.batch_size} does not split evenly over "
                             f"{self.world.size} processes")
        self.rank_batch = cfg.batch_size // self.world.size
        self.latents, self.val_latents = latents, val_latents.float().cpu()
        self.latents_checksum = float(latents.double().sum())
        self.use_id = identity is not None and cfg.id_lambda > 0
        self.text_emb = clip.encode_text(prompt)

        self.mapper = LevelsMapper(num_ws, dim, no_coarse=cfg.no_coarse, no_medium=cfg.no_medium,
                                   no_fine=cfg.no_fine)
        # the mapper's initial weights come from the run's seed, not from the global RNG
        init = torch.Generator().manual_seed(cfg.seed + 1)
        with torch.no_grad():
            for p in self.mapper.parameters():
                if p.ndim > 1:
                    p.copy_(torch.randn(p.shape, generator=init) / 0.01)  # EqualLinear init: N(0,1)/lr_mul
                else:
                    p.zero_()
        self.mapper.to(self.device).train()
        self.params = list(self.mapper.parameters())
        self.model = self.mapper  # what the training step calls: the mapper, or its DDP wrapper
        if self.world.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                self.mapper, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.optimizer == "ranger":
            self.optimizer = Ranger(self.params, lr=cfg.lr)
        else:
            self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr)

        self.rng = torch.Generator().manual_seed(cfg.seed)
        self.perm = torch.randperm(latents.shape[0], generator=self.rng)
        self.pos = 0
        self.step = 0
        self.best_val_loss: float | None = None
        self.val_history: list[dict] = []
        self.losses: dict = {}
        self._id_cache: dict[int, torch.Tensor] = {}
        self._val_src: torch.Tensor | None = None
        self._fingerprint: str | None = None
        self.train_seconds = 0.0  # wall time spent in run() over all sessions of this run (resumes add up)

    # ---- losses --------------------------------------------------------------------------------------
    def _source_identity(self, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        missing = [j for j, i in enumerate(idx.tolist()) if i not in self._id_cache]
        if missing:
            with torch.no_grad():
                emb = self.identity.embed(self.g.synthesis(w[missing])).float()
            for j, e in zip(missing, emb):
                self._id_cache[int(idx[j])] = e.detach()
        return torch.stack([self._id_cache[int(i)] for i in idx.tolist()])

    def losses_for(self, w: torch.Tensor, idx: torch.Tensor | None = None, *, src_id: torch.Tensor | None = None,
                   mapper=None):
        """(total loss, dict of floats, edited image) for a batch of W+ latents."""
        cfg = self.cfg
        residual = (mapper or self.mapper)(w)
        w_hat = w + cfg.residual_scale * residual
        x_hat = self.g.synthesis(w_hat)
        loss_clip = clip_loss(self.clip.encode_image(x_hat), self.text_emb).mean()
        loss_l2 = (cfg.residual_scale * residual).square().mean()  # = MSE(w_hat, w), element mean
        total = cfg.clip_lambda * loss_clip + cfg.l2_lambda * loss_l2
        out = {"clip": loss_clip.item(), "l2": loss_l2.item()}
        if self.use_id:
            if src_id is None:
                src_id = self._source_identity(idx, w)
            loss_id = identity_loss(self.identity.embed(x_hat).float(), src_id).mean()
            total = total + cfg.id_lambda * loss_id
            out["id"] = loss_id.item()
        out["loss"] = total.item()
        return total, out, x_hat

    def train_step(self) -> dict:
        idx = self.perm[self.pos * self.cfg.batch_size:(self.pos + 1) * self.cfg.batch_size]
        idx = idx[self.world.rank * self.rank_batch:(self.world.rank + 1) * self.rank_batch]  # this rank's slice
        w = self.latents[idx].to(self.device)
        loss, out, _ = self.losses_for(w, idx, mapper=self.model)
        if not torch.isfinite(loss):
            raise NumericalError(f"the training loss became NaN/inf at step {self.step + 1}; lower --lr or the "
                                 "lambdas (the run so far is saved; --resume continues from it)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=self.params)  # mapper gradients only (DDP averages them over the ranks)
        if self.world.size > 1:  # the losses of the effective batch, for the log
            names = sorted(out)
            mean = distributed.all_reduce_sum(torch.tensor([out[k] for k in names], dtype=torch.float64))
            out = {k: float(v) / self.world.size for k, v in zip(names, mean)}
        # commit: after this the persistent state describes the next step
        self._in_update = True
        self.optimizer.step()
        self.step += 1
        self.pos += 1
        if self.pos == self.latents.shape[0] // self.cfg.batch_size:
            self.perm = torch.randperm(self.latents.shape[0], generator=self.rng)
            self.pos = 0
        self._in_update = False
        self.losses = out
        return out

    @torch.no_grad()
    def validate(self) -> dict:
        """Mean losses over the validation latents (mapper in eval mode, nothing cached from training)."""
        n = self.val_latents.shape[0]
        if n == 0:
            return {}
        sums: dict[str, float] = {}
        bs = max(self.cfg.batch_size, 4)
        for i in range(0, n, bs):
            w = self.val_latents[i:i + bs].to(self.device)
            src_id = None
            if self.use_id:
                src_id = self.identity.embed(self.g.synthesis(w)).float()
            _, out, _ = self.losses_for(w, src_id=src_id)
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v * w.shape[0]
        return {k: v / n for k, v in sums.items()}

    @torch.no_grad()
    def image_grid(self):
        """PIL grid of [source, edited] pairs (one pair per row) of the first validation latents."""
        from styleclip.util.imaging import grid, upscale_for_viewing

        k = min(self.cfg.num_image_pairs, self.val_latents.shape[0])
        if k == 0:
            return None
        w = self.val_latents[:k].to(self.device)
        if self._val_src is None:
            self._val_src = self.g.synthesis(w).cpu()
        edited = self.g.synthesis(w + self.cfg.residual_scale * self.mapper(w)).cpu()
        pairs = [t for pair in zip(self._val_src, edited) for t in pair]
        return upscale_for_viewing(grid(pairs, ncols=2), min_size=512)

    def distill(self) -> dict:
        """Fit the mapper to the teacher's W+ change on the training latents: MSE of residual_scale * M(w)
        against teacher(w) for `distill_steps` Adam steps (the starting point of the CLIP steps). Returns the
        relative error |change - teacher| / |teacher| (squared norms, over the validation latents when there are
        any) and the seconds taken."""
        cfg, t0 = self.cfg, time.perf_counter()
        rng = torch.Generator().manual_seed(cfg.seed + 2)
        opt = torch.optim.Adam(self.params, lr=cfg.distill_lr)
        n = self.latents.shape[0]
        for _ in range(cfg.distill_steps):
            w = self.latents[torch.randint(0, n, (min(cfg.distill_batch, n),), generator=rng)].to(self.device)
            loss = (cfg.residual_scale * self.mapper(w) - self.teacher(w)).square().mean()
            if not torch.isfinite(loss):
                raise NumericalError("the distillation loss became NaN/inf; lower distill_lr")
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=self.params)
            opt.step()
        distributed.broadcast_tensors([p.data for p in self.params])  # every rank starts from rank 0's fit
        held = self.val_latents if self.val_latents.shape[0] else self.latents[:256]
        with torch.no_grad():
            w = held.to(self.device)
            target = self.teacher(w)
            err = (cfg.residual_scale * self.mapper(w) - target).square().sum() / target.square().sum().clamp_min(1e-12)
        self.distilled = {"steps": cfg.distill_steps, "relative_error": round(float(err), 5),
                          "seconds": round(time.perf_counter() - t0, 3)}
        return self.distilled

    # ---- checkpoints ---------------------------------------------------------------------------------
    def info(self) -> dict:
        if self._fingerprint is None:
            self._fingerprint = generator_fingerprint(self.g)
        return {"prompt": self.prompt, "levels": list(self.mapper.levels), "residual_scale": self.cfg.residual_scale,
                "generator": {"config": self.g.config.to_dict(), "fingerprint": self._fingerprint},
                "clip": getattr(self.clip, "name", ""), "identity": self.use_id,
                "training": {**dataclasses.asdict(self.cfg), **self.notes}, "step": self.step,
                "losses": self.losses, "best_val_loss": self.best_val_loss,
                "val": self.val_history[-1] if self.val_history else None,
                "distilled": self.distilled, "train_seconds": round(self.train_seconds, 3)}

    def state_dict(self) -> dict:
        return {"format": "styleclip-mapper-train-state", "step": self.step, "prompt": self.prompt,
                "world_size": self.world.size,
                "config": dataclasses.asdict(self.cfg), "mapper": self.mapper.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": self.rng.get_state(), "perm": self.perm,
                "pos": self.pos, "best_val_loss": self.best_val_loss, "losses": self.losses,
                "val_history": json.dumps(self.val_history), "latents_checksum": self.latents_checksum,
                "train_seconds": self.train_seconds, "distilled": json.dumps(self.distilled)}

    def load_state_dict(self, state: dict, *, source: str = "train state") -> None:
        if state.get("format") != "styleclip-mapper-train-state":
            raise CheckpointError(f"{source}: not a mapper training state")
        if state["prompt"] != self.prompt:
            raise InputError(f"{source} was trained for {state['prompt']!r}, not {self.prompt!r}")
        ours = dataclasses.asdict(self.cfg)
        theirs, n_then, n_now = state["config"]["batch_size"], int(state.get("world_size", 1)), self.world.size
        if theirs != self.cfg.batch_size:
            split = (f"pass --batch-size {theirs // n_now} (per process) to resume it exactly" if theirs % n_now == 0
                     else f"it cannot be split evenly over {n_now} processes")
            raise InputError(f"cannot resume {source}: its effective batch is {theirs} ({theirs // n_then} per "
                             f"process x {n_then}), this launch's is {self.cfg.batch_size} ({self.rank_batch} per "
                             f"process x {n_now}); {split}")
        changed = [k for k, v in state["config"].items() if k not in _RESUMABLE_CHANGES and ours.get(k) != v]
        if changed:
            raise InputError(f"cannot resume {source} with different settings: "
                             + ", ".join(f"{k} {state['config'][k]} -> {ours.get(k)}" for k in changed))
        if not math.isclose(state["latents_checksum"], self.latents_checksum, rel_tol=1e-9, abs_tol=1e-6):
            raise InputError(f"cannot resume {source}: the training latents differ from the original run's")
        self.mapper.load_state_dict(state["mapper"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        self.perm, self.pos, self.step = state["perm"], int(state["pos"]), int(state["step"])
        self.best_val_loss = state["best_val_loss"]
        self.losses = dict(state["losses"])
        self.val_history = json.loads(state["val_history"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.distilled = json.loads(state.get("distilled", "null"))

    def _finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.mapper.parameters())

    def save_state(self) -> Path | None:
        if self.out_dir is None or not self.world.is_main:
            return None
        if not self._finite():  # never replace a good saved state with a diverged one
            raise NumericalError(f"the mapper weights became NaN/inf at step {self.step}; lower --lr "
                                 "(the last saved state is kept)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "train_state.pt"
        tmp = path.with_name(path.name + ".partial")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)
        save_mapper(self.mapper, self.out_dir / "last.safetensors", info=self.info())
        return path

    def resume(self) -> bool:
        """Load `out_dir/train_state.pt` if present; True when a state was loaded."""
        if self.out_dir is None:
            return False
        path = self.out_dir / "train_state.pt"
        if not path.is_file():
            return False
        with reading(path, "training state"):
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise CheckpointError(f"{path}: not a mapper training state")
            self.load_state_dict(state, source=str(path))
        self.mapper.to(self.device)
        return True

    def _log(self, record: dict) -> None:
        if self.out_dir is None or not self.world.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    # ---- the loop ------------------------------------------------------------------------------------
    def run(self, *, progress: ProgressFn | None = None, log: LogFn | None = None) -> TrainResult:
        cfg = self.cfg
        self._in_update = False
        t0, base = time.perf_counter(), self.train_seconds
        main = self.world.is_main  # rank 0 alone validates and writes
        if self.step == 0 and self.teacher is not None and cfg.distill_steps > 0:
            self.distill()
            self.train_seconds = base + time.perf_counter() - t0
            if main:
                self._log({"step": 0, "time": time.time(), **{f"distill_{k}": v for k, v in self.distilled.items()}})
        if self.step == 0 and main:
            first = self.validate()  # sanity value (the official trainer discards it for "best" too)
            if first:
                self.val_history.append({"step": 0, **first})
                self._log({"step": 0, "time": time.time(), **{f"val_{k}": v for k, v in first.items()}})
        report(progress, self.step, cfg.steps)
        try:
            while self.step < cfg.steps:
                out = self.train_step()
                self.train_seconds = base + time.perf_counter() - t0
                s = self.step
                record = dict(out)
                if main and (s % cfg.val_interval == 0 or s == cfg.steps):
                    val = self.validate()
                    if val:
                        self.val_history.append({"step": s, **val})
                        record.update({f"val_{k}": v for k, v in val.items()})
                        if self.best_val_loss is None or val["loss"] < self.best_val_loss:
                            self.best_val_loss = val["loss"]
                            if self.out_dir is not None:
                                save_mapper(self.mapper, self.out_dir / "best.safetensors", info=self.info())
                if main and self.out_dir is not None and (s % cfg.image_interval == 0 or s == cfg.steps):
                    img = self.image_grid()
                    if img is not None:
                        (self.out_dir / "images").mkdir(parents=True, exist_ok=True)
                        tmp = self.out_dir / "images" / f".step_{s:06d}.png"
                        img.save(tmp)
                        tmp.replace(self.out_dir / "images" / f"step_{s:06d}.png")
                if s % cfg.save_interval == 0 or s == cfg.steps:
                    self.save_state()
                if s % cfg.log_interval == 0 or "val_loss" in record or s == cfg.steps:
                    self._log({"step": s, "time": time.time(), **record})
                if log is not None:
                    log(s, record)
                report(progress, s, cfg.steps)
        except BaseException:
            # a consistent state (everything up to the last finished step) is saved, so --resume goes on
            # from exactly there; an interruption inside the optimizer update could leave it half-applied
            if not self._in_update and self.out_dir is not None and self.step > 0 and self._finite():
                self.save_state()
            raise
        if main and self.out_dir is not None and self.val_latents.shape[0] == 0:
            save_mapper(self.mapper, self.out_dir / "best.safetensors", info=self.info())
        best = self.out_dir / "best.safetensors" if self.out_dir is not None else None
        last = self.out_dir / "last.safetensors" if self.out_dir is not None else None
        return TrainResult(self.mapper, self.step, self.best_val_loss, best if best and best.is_file() else None,
                           last if last and last.is_file() else None, self.losses, self.val_history)


def train_mapper(generator, clip, prompt: str, *, identity=None, config: MapperTrainConfig = MapperTrainConfig(),
                 latents: torch.Tensor | None = None, val_latents: torch.Tensor | None = None,
                 out_dir: str | Path | None = None, resume: bool = False, progress: ProgressFn | None = None,
                 log: LogFn | None = None, notes: dict | None = None, teacher: Teacher | None = None) -> TrainResult:
    """Train (or with resume=True continue) a LevelsMapper for `prompt`; see MapperTrainer. With a teacher
    (e.g. `UniversalMapperEditor.teacher(prompt)`) a fresh run starts from the mapper fitted to its W+ change."""
    trainer = MapperTrainer(generator, clip, prompt, identity=identity, config=config, latents=latents,
                            val_latents=val_latents, out_dir=out_dir, notes=notes, teacher=teacher)
    start_or_resume(trainer, out_dir, resume)
    return trainer.run(progress=progress, log=log)
