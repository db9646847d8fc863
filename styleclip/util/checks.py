"""Bounds on what users and files may ask for: finite numbers in range, tensors that are finite and of a sane
size, memory estimates before allocating. Each check raises a one-line StyleClipError subclass."""
from __future__ import annotations

import contextlib
import math

import torch

from styleclip.errors import CheckpointError, InputError, NumericalError, StyleClipError

MAX_SEED = 2 ** 63 - 1  # torch.Generator.manual_seed takes 64-bit seeds
MEMORY_BUDGET = 1 << 30  # bytes one requested allocation (a batch, a latent set, a crop) may take
MAX_TENSOR_ELEMENTS = 1 << 28  # per tensor read from a file (1 GiB in fp32; FFHQ 1024's largest is 2.4M)
MAX_FILE_ELEMENTS = 1 << 29  # all tensors of one file together (FFHQ 1024's generator: 30M)


def number(value, name: str, *, lo: float | None = None, hi: float | None = None, integer: bool = False,
           open_lo: bool = False):
    """`value` if it is a finite number (an int when `integer`) within [lo, hi] (lo excluded when `open_lo`)."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise InputError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not integer and not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")
    below = lo is not None and (value <= lo if open_lo else value < lo)
    if below or (hi is not None and value > hi):
        lo_txt = "-inf" if lo is None else f"{lo:g}" if not integer else str(lo)
        hi_txt = "inf" if hi is None else f"{hi:g}" if not integer else str(hi)
        brackets = ("(" if open_lo else "[", "]")
        raise InputError(f"{name} must be in {brackets[0]}{lo_txt}, {hi_txt}{brackets[1]}, got {value:g}"
                         if not integer else f"{name} must be an integer from {lo_txt} to {hi_txt}, got {value}")
    return value


def integer(value, name: str, lo: int, hi: int) -> int:
    return number(value, name, lo=lo, hi=hi, integer=True)


def seed(value, name: str = "seed") -> int:
    return integer(value, name, 0, MAX_SEED)


def memory(n_bytes: float, what: str, *, budget: int = MEMORY_BUDGET, hint: str = "") -> None:
    """Refuse an allocation estimated at `n_bytes` above `budget`, before making it."""
    if n_bytes > budget:
        raise InputError(f"{what} would need about {_gib(n_bytes)} of memory (limit {_gib(budget)})"
                         + (f"; {hint}" if hint else ""))


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 27 else f"{n / 2 ** 20:.0f} MiB"


def finite_tensors(tensors, what: str, *, error=NumericalError) -> None:
    """Raise `error` naming the first tensor (of a tensor, list or dict) with NaN or infinite values."""
    items = tensors.items() if isinstance(tensors, dict) else enumerate(
        tensors if isinstance(tensors, (list, tuple)) else [tensors])
    for key, t in items:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() and not torch.isfinite(t).all():
            where = f" ({key})" if isinstance(tensors, (dict, list, tuple)) else ""
            raise error(f"{what} contain{'s' if what.endswith(('latent', 'image', 'face')) else ''} NaN or "
                        f"infinite values{where}")


def file_tensors(state: dict, source: str, *, what: str = "the weights") -> None:
    """Tensors read from a file: sane sizes (no view claiming more elements than its storage holds, no huge
    tensors) and finite values; else a CheckpointError naming the file."""
    total = 0
    for key, t in state.items():
        if not isinstance(t, torch.Tensor):
            continue
        n = t.numel()
        total += n
        if n > MAX_TENSOR_ELEMENTS or total > MAX_FILE_ELEMENTS:
            raise CheckpointError(f"{source}: tensor {key} {list(t.shape)} is larger than any supported network "
                                  "holds")
        if n and t.untyped_storage().nbytes() < n * t.element_size():  # an expanded (stride-0) view
            raise CheckpointError(f"{source}: tensor {key} {list(t.shape)} is a view larger than its data")
    finite_tensors(state, f"{source}: {what}", error=CheckpointError)


def read_npy(path, what: str, *, error=CheckpointError, max_elements: int = MAX_TENSOR_ELEMENTS) -> torch.Tensor:
    """A numeric .npy array as a float32 tensor, its header checked before any allocation: a known version,
    a plain numeric dtype (no pickled objects), a shape whose size fits the data in the file and the limit.
    Every failure is one `error` line naming the file."""
    import os

    import numpy as np
    from numpy.lib import format as npformat

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            version = npformat.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npformat.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject or dtype.kind not in "biuf" or dtype.subdtype is not None:
                raise ValueError(f"dtype {dtype} is not a plain number type")
            if any(not isinstance(d, int) or d < 0 for d in shape):
                raise ValueError(f"bad shape {shape}")
            n = math.prod(shape)
            if n > max_elements:
                raise ValueError(f"shape {list(shape)} is larger than supported ({max_elements} values)")
            if n * dtype.itemsize > size - f.tell():
                raise ValueError(f"header claims {list(shape)} {dtype}, more than the file holds (truncated?)")
            data = np.fromfile(f, dtype=dtype, count=n)
    except Exception as e:  # numpy's header parser raises many kinds (SyntaxError, TokenError, ValueError, ...)
        raise error(f"{path}: unreadable {what} (.npy): {' '.join(str(e).split())[:200]}") from None
    data = data.reshape(shape, order="F" if fortran else "C")
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))


@contextlib.contextmanager
def reading(path, what: str):
    """Turn any failure while reading and interpreting file `path` into one CheckpointError line (our own
    StyleClipErrors pass through): a crafted file must never surface as a traceback."""
    try:
        yield
    except StyleClipError:
        raise
    except MemoryError:
        raise CheckpointError(f"{path}: {what} asks for more memory than is available") from None
    except RecursionError:
        raise CheckpointError(f"{path}: {what} is nested too deeply (refused)") from None
    except Exception as e:  # whatever the parsing libraries raise (SafetensorError, UnpicklingError, ...)
        raise CheckpointError(f"{path}: unreadable or malformed {what}: {' '.join(str(e).split())[:200]}") \
            from None
