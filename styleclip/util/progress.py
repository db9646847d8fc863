"""Progress callbacks `(done, total)`: calling an optional one, and a printer with rate and ETA."""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no torch for the progress printer
    from styleclip.types import ProgressFn


def report(progress: ProgressFn | None, done: int, total: int) -> None:
    """Call `progress(done, total)` when there is one."""
    if progress is not None:
        progress(done, total)


class EtaPrinter:
    """A progress callback printing done/total, rate and ETA at most every `every` seconds (to `write`)."""

    def __init__(self, label: str, write=print, every: float = 2.0):
        self.label, self.write, self.every = label, write, every
        self.t0, self.last, self.start_done = time.perf_counter(), 0.0, None

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.start_done is None:
            self.start_done = done
        if done < total and now - self.last < self.every:
            return
        self.last = now
        rate = (done - self.start_done) / max(now - self.t0, 1e-9)
        eta = (total - done) / rate if rate > 0 else math.inf
        eta_s = "?" if math.isinf(eta) else time.strftime("%H:%M:%S", time.gmtime(eta))
        self.write(f"{self.label}: {done}/{total} ({100 * done / max(total, 1):.1f}%), ETA {eta_s}")
