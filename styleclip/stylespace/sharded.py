"""Resumable sums of a run split into chunks and shared out among the ranks of a torchrun world."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from styleclip.errors import StyleClipError


def _add(acc: dict, part: dict) -> None:
    for name, t in part.items():
        acc[name] += t


class ShardedSums:
    """Partial results of a run split into `n_chunks` chunks of work, shared out among the ranks of a torchrun
    world (round robin over the chunks not done yet) and resumable.

    Each rank folds its chunks' results into float64 arrays with `merge` (default: a sum) and, with a
    `folder`, saves them with the list of its finished chunks to `folder/rank<r>.npz` after every chunk
    (written aside and renamed). A rerun, with any number of ranks, skips every chunk found in the folder's
    files; `finish()` (all ranks) merges the files, checks that every chunk is there exactly once and
    removes the folder. For several nodes the folder must be on a file system all of them see. Without a
    folder nothing is shared out: every rank computes every chunk (same result, no speed-up).
    """

    def __init__(self, folder: str | Path | None, key: dict, arrays: dict[str, torch.Tensor], n_chunks: int,
                 *, merge=_add):
        from styleclip.util import distributed

        self.folder, self.key, self.merge, self.n_chunks = (Path(folder) if folder else None), key, merge, n_chunks
        self.world = distributed.world() if self.folder is not None else distributed.World()
        self.zero = {k: v.clone() for k, v in arrays.items()}
        self.arrays, self.chunks = arrays, []
        done: list[int] = []
        if self.world.is_main and self.folder is not None and self.folder.is_dir():
            for f in sorted(self.folder.glob("rank*.npz")):
                part = self._read(f)
                if part is None:  # another run's (other settings) or unreadable: start those chunks again
                    f.unlink()
                else:
                    done += part[1]
        if self.world.size > 1:
            done = distributed.broadcast_object(sorted(done))
        own = self._read(self._file(self.world.rank)) if self.folder is not None else None
        if own is not None:
            self.arrays.update(own[0])
            self.chunks = list(own[1])
        self.done_before = len(done)
        taken = set(done)
        self.mine = distributed.shard([j for j in range(n_chunks) if j not in taken], self.world)
        self._finished_here = 0

    def _file(self, rank: int) -> Path:
        return self.folder / f"rank{rank}.npz"

    def _read(self, path: Path):
        """(arrays, chunk ids) of a rank file of this run, None if absent, unreadable or another run's."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if json.loads(str(z["key"])) != self.key:
                    return None
                arrays = {k: torch.from_numpy(z[f"a_{k}"].copy()) for k in self.zero}
                return arrays, [int(c) for c in z["chunks"]]
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return None

    def is_done(self, chunk: int) -> bool:
        return chunk in self.chunks

    def add(self, chunk: int, part: dict[str, torch.Tensor]) -> None:
        """Fold chunk `chunk`'s result in and save (so an interrupted run resumes after it)."""
        self.merge(self.arrays, {k: v.detach().double().cpu() for k, v in part.items()})
        self.chunks.append(chunk)
        self._finished_here += 1
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._file(self.world.rank)
        tmp = path.with_name(f".{path.stem}.tmp.npz")  # not matched by rank*.npz
        np.savez(tmp, key=json.dumps(self.key), chunks=np.asarray(self.chunks, dtype=np.int64),
                 **{f"a_{k}": v.numpy() for k, v in self.arrays.items()})
        tmp.replace(path)

    def progress(self) -> tuple[int, int]:
        """(done, total) as this rank sees it: chunks done before it started plus its own, of those plus its
        share (in a world of one: of all chunks)."""
        return self.done_before + self._finished_here, self.done_before + len(self.mine)

    def finish(self) -> dict[str, torch.Tensor]:
        """All ranks: wait for every rank, merge every rank file (or, alone and without a folder, the arrays)."""
        from styleclip.util import distributed

        if self.folder is None:
            total, seen = self.arrays, sorted(self.chunks)
        else:
            distributed.barrier()
            total, seen = {k: v.clone() for k, v in self.zero.items()}, []
            for f in sorted(self.folder.glob("rank*.npz"), key=lambda p: int(p.stem[4:])):
                part = self._read(f)
                if part is not None:
                    self.merge(total, part[0])
                    seen += part[1]
            seen.sort()
        if seen != list(range(self.n_chunks)):
            missing = sorted(set(range(self.n_chunks)) - set(seen))
            raise StyleClipError(f"{self.folder}: chunks missing or doubled after the run ({len(seen)} found, "
                                 f"{len(missing)} missing); with several nodes the checkpoint folder must be "
                                 "shared by all of them")
        if self.folder is not None:
            distributed.barrier()  # every rank has read the files
        if self.world.is_main and self.folder is not None:
            for f in list(self.folder.glob("rank*.npz")) + list(self.folder.glob(".rank*.tmp.npz")):
                f.unlink()
            try:
                self.folder.rmdir()
            except OSError:
                pass
        return total

