"""torch.distributed plumbing for runs launched by torchrun (one process per device; gloo on CPU, NCCL on CUDA).

Without torchrun (no WORLD_SIZE in the environment) everything here is a no-op for a world of one process, so
library code calls these helpers unconditionally. The process group is torch.distributed's own; this module
keeps no state of its own.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

TIMEOUT_MINUTES = 180  # a rank may wait this long at a barrier (peers still on their last chunks)


@dataclass(frozen=True)
class World:
    """This process's place in the run: `rank` of `size` processes, `local_rank` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True in a process started by torchrun (or any launcher that sets the env:// variables)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_from_env(device: str | torch.device | None = None) -> World:
    """Join the process group described by torchrun's environment (idempotent); a world of one otherwise.

    Backend: NCCL when `device` is CUDA, else gloo. On CUDA the process's device is cuda:LOCAL_RANK."""
    if not launched():
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        cuda = device is not None and torch.device(device).type == "cuda"
        backend = "nccl" if cuda else "gloo"
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=TIMEOUT_MINUTES))
    return world()


def world() -> World:
    """The current process group's view (a world of one when none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend())


def local_device(device: str | torch.device) -> torch.device | str:
    """The device of this rank: 'auto'/'cuda' become cuda:LOCAL_RANK under torchrun when CUDA is present."""
    if launched() and str(device) in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def shard(items: list, w: World | None = None) -> list:
    """This rank's share of `items`: every size-th item starting at its rank (round robin: neighbouring items,
    which often cost alike, go to different ranks)."""
    w = w or world()
    return items[w.rank::w.size]


def shard_range(n: int, w: World | None = None) -> range:
    """A contiguous near-equal slice [start, stop) of range(n) for this rank (the first n % size ranks get one
    more)."""
    w = w or world()
    per, extra = divmod(n, w.size)
    start = w.rank * per + min(w.rank, extra)
    return range(start, start + per + (1 if w.rank < extra else 0))


def barrier() -> None:
    if world().size > 1:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over all ranks (in place, and returned); `t` as it is in a world of one."""
    if world().size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_tensors(tensors, src: int = 0) -> None:
    """Overwrite each tensor (in place) with rank `src`'s values; nothing in a world of one."""
    if world().size > 1:
        for t in tensors:
            dist.broadcast(t, src=src)


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s `obj` on every rank (picklable objects made by this program only)."""
    if world().size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
