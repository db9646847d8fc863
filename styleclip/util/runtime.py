"""Process-wide settings for the command line and the app (not applied by `import styleclip`)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024

_applied = False


def keep_freed_memory(keep: bool = True) -> bool:
    """Let glibc's malloc reuse freed memory instead of returning it to the kernel (Linux/glibc; elsewhere a no-op).

    By default glibc serves every allocation over 32 MB (a 1024 px activation is 128 MB) with a fresh mmap and
    unmaps it on free, so each generator forward page-faults and zeroes its activations anew (the kernel time
    per forward is printed by benchmarks/generator.py). Serving them from the heap and never trimming
    it makes the next forward reuse the same pages. The cost is memory: the process keeps what it freed for
    later work (as torch's CUDA allocator does), and the heap fragments (torch asks for 64-byte aligned blocks,
    which an exactly-sized freed block cannot serve), so the peak grows somewhat (docs/performance.md
    compares both settings on a 1024 px optimization step). Set
    STYLECLIP_KEEP_FREED_MEMORY=0 for glibc's defaults and the least memory. keep=False restores glibc's defaults
    (and returns the free heap to the kernel) where this process had kept it. Returns whether it is in effect.
    """
    global _applied
    if not keep:
        if _applied:
            _applied = not _restore_defaults()
        return _applied
    if _applied:
        return True
    if os.environ.get("STYLECLIP_KEEP_FREED_MEMORY", "1").strip().lower() in ("0", "no", "false", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    mallopt = _mallopt()
    # -1 disables trimming (mallopt(3)); with no mmap-served blocks, large blocks come from the heap and,
    # where the heap cannot grow, glibc still falls back to mmap, so no allocation fails because of this.
    _applied = mallopt is not None and bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
    return _applied


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _mallopt():
    mallopt = getattr(_libc(), "mallopt", None)  # absent in musl and other C libraries
    if mallopt is not None:
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
    return mallopt


def _restore_defaults() -> bool:
    """glibc's defaults again (mmap for large blocks, trimming at 128 KiB), and the free heap handed back."""
    libc, mallopt = _libc(), _mallopt()
    ok = mallopt is not None and bool(mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD))
    trim = getattr(libc, "malloc_trim", None)
    if ok and trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim(0)
    return ok


def freed_memory_kept() -> bool:
    """Whether keep_freed_memory() is in effect in this process."""
    return _applied


def compile_backend_missing(device) -> str | None:
    """What torch.compile's default backend lacks on this device's type, or None: inductor builds C++ kernels
    with a C++ compiler on the CPU and Triton kernels on CUDA; elsewhere it is not offered."""
    import importlib.util
    import shutil

    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cpu":
        names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
        return None if any(shutil.which(n) for n in names) else "a C++ compiler (g++ or clang++) on the CPU"
    if kind == "cuda":
        return None if importlib.util.find_spec("triton") else "Triton on CUDA (pip install triton)"
    return f"a torch.compile backend for {kind}, which styleclip does not set up"
