"""Training the universal mapper without any text (DeltaEdit-style), resumable.

Data: n latents sampled from the generator, rendered once; their CLIP image embeddings e and identity
embeddings are cached (`bank.pt` in the run folder). A step draws pairs (i, j) as a pure function of
(seed, step), conditions the mapper on d = unit(e_j - e_i) and edits w_i:

    w_hat = w_i + residual_scale * M(w_i, d)
    loss = clip_lambda * (1 - cos(e(G(w_hat)), e_j))            reach what CLIP sees in face j
         + direction_lambda * (1 - cos(e(G(w_hat)) - e_i, d))   move along d, not elsewhere
         + id_lambda * (1 - <R(G(w_hat)), R(G(w_i))>)          stay the same person (R: identity net)
         + l2_lambda * mean((w_hat - w_i)^2)

Since CLIP image and text embeddings share one space, at edit time d comes from a prompt's image-side
direction or a reference image (`editors/universal_mapper.py`), for prompts never seen in training.

Resumability: batches depend only on (seed, step), the learning rate is constant after a linear warm-up, and
`train_state.pt` (read with weights_only=True) holds mapper + Adam state + step, so a resumed run continues
the same sequence. Data parallel: when a torch.distributed process group is initialised (torchrun), every
rank draws its own pairs (rank in the batch seed), gradients are averaged with all_reduce and only rank 0
writes files (a hook until `styleclip.util.distributed` provides the launcher helpers).
"""
from __future__ import annotations

import dataclasses
import json
import pickle
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from styleclip.errors import CheckpointError, InputError
from styleclip.losses import identity_loss
from styleclip.nets.universal_mapper import UniversalMapper
from styleclip.types import ProgressFn
from styleclip.editors.base import report, start_or_resume
from styleclip.util.fingerprint import generator_fingerprint
from styleclip.training.mapper import sample_latents
from styleclip.store.mappers import save_universal_mapper

LogFn = Callable[[int, dict], None]


@dataclass(frozen=True)
class UniversalTrainConfig:
    steps: int = 3000
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 100
    clip_lambda: float = 1.0
    direction_lambda: float = 1.0
    id_lambda: float = 1.0
    l2_lambda: float = 0.5
    residual_scale: float = 1.0
    hidden: int = 256
    n_layers: int = 4
    num_latents: int = 4000
    truncation: float = 0.7
    save_interval: int = 200
    log_interval: int = 20
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "save_interval", "log_interval", "num_latents"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


_RESUMABLE_CHANGES = {"steps", "save_interval", "log_interval"}


def _dist():
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class UniversalMapperTrainer:
    """One run: `run()` trains to `config.steps`, checkpointing on the way; `out_dir/universal.safetensors`
    is the latest mapper."""

    def __init__(self, generator, clip, identity=None, *, config: UniversalTrainConfig = UniversalTrainConfig(),
                 out_dir: str | Path | None = None):
        self.g, self.clip, self.identity, self.cfg = generator, clip, identity, config
        self.device = generator.w_avg.device
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.rank, self.world = _dist()
        clip_dim = int(clip.encode_text("a face").shape[-1])
        torch.manual_seed(config.seed)  # the initial weights (the only use of the global generator)
        self.mapper = UniversalMapper(generator.num_ws, generator.config.style_dim, clip_dim,
                                      hidden=config.hidden, n_layers=config.n_layers).to(self.device).train()
        self.params = list(self.mapper.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr)
        self.step = 0
        self.losses: dict = {}
        self.train_seconds = 0.0
        self.w, self.emb, self.id_emb = self._bank()

    @torch.no_grad()
    def _bank(self):
        cfg = self.cfg
        path = self.out_dir / "bank.pt" if self.out_dir is not None else None
        key = {"n": cfg.num_latents, "truncation": cfg.truncation, "seed": cfg.seed,
               "generator": generator_fingerprint(self.g)}
        if path is not None and path.is_file():
            bank = torch.load(path, map_location="cpu", weights_only=True)
            if bank.get("key") == json.dumps(key, sort_keys=True):
                return bank["w"], bank["emb"], bank["id_emb"]
        w = sample_latents(self.g, cfg.num_latents, truncation=cfg.truncation, seed=cfg.seed)
        emb, ids = [], []
        for i in range(0, len(w), 64):
            img = self.g.synthesis(w[i:i + 64].to(self.device))
            emb.append(self.clip.encode_image(img).float().cpu())
            ids.append(self.identity.embed(img).float().cpu() if self.identity is not None
                       else torch.zeros(img.shape[0], 1))
        emb, ids = torch.cat(emb), torch.cat(ids)
        if path is not None and self.rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"key": json.dumps(key, sort_keys=True), "w": w, "emb": emb, "id_emb": ids}, path)
        return w, emb, ids

    def pairs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (i, j), i != j, of a step's batch: a pure function of (seed, step, rank)."""
        rng = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step * 101 + self.rank)
        n, b = self.w.shape[0], self.cfg.batch_size
        i = torch.randint(n, (b,), generator=rng)
        j = (i + 1 + torch.randint(n - 1, (b,), generator=rng)) % n
        return i, j

    def losses_for(self, i: torch.Tensor, j: torch.Tensor):
        cfg = self.cfg
        w = self.w[i].to(self.device)
        e_i, e_j = self.emb[i].to(self.device), self.emb[j].to(self.device)
        d = F.normalize(e_j - e_i, dim=-1)
        delta = cfg.residual_scale * self.mapper(w, d)
        img = self.g.synthesis(w + delta)
        e_hat = self.clip.encode_image(img).float()
        l_clip = (1 - (e_hat * e_j).sum(-1)).mean()
        l_dir = (1 - F.cosine_similarity(e_hat - e_i, d, dim=-1)).mean()
        l_l2 = delta.square().mean()
        total = cfg.clip_lambda * l_clip + cfg.direction_lambda * l_dir + cfg.l2_lambda * l_l2
        out = {"clip": l_clip.item(), "direction": l_dir.item(), "l2": l_l2.item()}
        if self.identity is not None and cfg.id_lambda > 0:
            l_id = identity_loss(self.identity.embed(img).float(), self.id_emb[i].to(self.device)).mean()
            total = total + cfg.id_lambda * l_id
            out["id"] = l_id.item()
        out["loss"] = total.item()
        return total, out

    def train_step(self) -> dict:
        lr = self.cfg.lr * min(1.0, (self.step + 1) / max(1, self.cfg.warmup))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, out = self.losses_for(*self.pairs(self.step))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=self.params)  # mapper gradients only
        if self.world > 1:
            import torch.distributed as dist

            for p in self.params:
                dist.all_reduce(p.grad)
                p.grad /= self.world
        self.optimizer.step()
        self.step += 1
        self.losses = out
        return out

    # ---- checkpoints ---------------------------------------------------------------------------------
    def info(self) -> dict:
        return {"residual_scale": self.cfg.residual_scale, "step": self.step, "losses": self.losses,
                "generator": {"config": self.g.config.to_dict(), "fingerprint": generator_fingerprint(self.g)},
                "clip": getattr(self.clip, "name", ""), "identity": self.identity is not None,
                "training": dataclasses.asdict(self.cfg), "world_size": self.world,
                "train_seconds": round(self.train_seconds, 1)}

    def state_dict(self) -> dict:
        return {"format": "styleclip-universal-train-state", "step": self.step, "config": dataclasses.asdict(self.cfg),
                "mapper": self.mapper.state_dict(), "optimizer": self.optimizer.state_dict(),
                "losses": json.dumps(self.losses), "train_seconds": self.train_seconds}

    def save(self) -> None:
        if self.out_dir is None or self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "train_state.pt"
        tmp = path.with_name(path.name + ".partial")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)
        save_universal_mapper(self.mapper, self.out_dir / "universal.safetensors", info=self.info())

    def resume(self) -> bool:
        path = self.out_dir / "train_state.pt" if self.out_dir is not None else None
        if path is None or not path.is_file():
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
            raise CheckpointError(f"{path}: unreadable training state: {' '.join(str(e).split())[:200]}") from None
        if state.get("format") != "styleclip-universal-train-state":
            raise CheckpointError(f"{path}: not a universal mapper training state")
        ours = dataclasses.asdict(self.cfg)
        changed = [k for k, v in state["config"].items() if k not in _RESUMABLE_CHANGES and ours.get(k) != v]
        if changed:
            raise InputError(f"cannot resume {path} with different settings: "
                             + ", ".join(f"{k} {state['config'][k]} -> {ours.get(k)}" for k in changed))
        self.mapper.load_state_dict(state["mapper"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.losses = json.loads(state["losses"])
        self.train_seconds = float(state["train_seconds"])
        return True

    def _log(self, record: dict) -> None:
        if self.out_dir is None or self.rank != 0:
            return
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, *, progress: ProgressFn | None = None, log: LogFn | None = None,
            max_seconds: float | None = None) -> UniversalMapper:
        """Train to config.steps (or until `max_seconds` of this session), saving every save_interval steps,
        on the way out (also when interrupted) and at the end."""
        cfg = self.cfg
        t0, base = time.perf_counter(), self.train_seconds
        report(progress, self.step, cfg.steps)
        try:
            while self.step < cfg.steps:
                out = self.train_step()
                self.train_seconds = base + time.perf_counter() - t0
                if self.step % cfg.log_interval == 0 or self.step == cfg.steps:
                    self._log({"step": self.step, "time": time.time(), "seconds": round(self.train_seconds, 1), **out})
                if self.step % cfg.save_interval == 0:
                    self.save()
                if log is not None:
                    log(self.step, out)
                report(progress, self.step, cfg.steps)
                if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                    break
        finally:
            if self.step > 0:
                self.save()
        return self.mapper


def train_universal_mapper(generator, clip, identity=None, *, config: UniversalTrainConfig = UniversalTrainConfig(),
                           out_dir: str | Path | None = None, resume: bool = False,
                           progress: ProgressFn | None = None, log: LogFn | None = None,
                           max_seconds: float | None = None) -> UniversalMapperTrainer:
    """Train (or with resume=True continue) a universal mapper; returns the trainer (mapper, step, losses)."""
    trainer = UniversalMapperTrainer(generator, clip, identity, config=config, out_dir=out_dir)
    start_or_resume(trainer, out_dir, resume)
    trainer.run(progress=progress, log=log, max_seconds=max_seconds)
    return trainer
