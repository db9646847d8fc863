"""The bounds of every numeric edit setting, shared by the CLI, the app and Python callers: what one front
end refuses, all refuse, with the same one-line message."""
from __future__ import annotations

# name -> (lo, hi); ints are integer settings. Seeds: 0 .. 2^63-1 (torch.Generator takes 64-bit seeds; the
# same as util.checks.MAX_SEED, which `--seeds` ranges use).
BOUNDS: dict[str, tuple] = {
    "seed": (0, 2 ** 63 - 1), "steps": (1, 1_000_000), "invert_steps": (1, 100_000), "pti_steps": (1, 100_000),
    "batch_size": (1, 256), "checkpoint_min_res": (4, 8192), "clip_views": (0, 64),
    "truncation": (-2.0, 2.0), "strength": (-100.0, 100.0), "beta": (0.0, 1.0), "lr": (0.0, 10.0),
    "l2_lambda": (0.0, 1e4), "id_lambda": (0.0, 1e4), "target_psnr": (0.0, 100.0), "target_identity": (-1.0, 1.0),
}
OPEN_LO = frozenset({"lr"})  # must be above their lower bound
ALIASES = {"alpha": "strength"}  # the app's and the paper's name for global's strength


def flag(name: str) -> str:
    """A setting's command-line spelling: l2_lambda -> --l2-lambda."""
    return "--" + name.replace("_", "-")


def check(name: str, value, *, label: str | None = None):
    """`value` as the setting `name` takes it (an int for integer settings), or a one-line InputError naming
    `label` (default: the option, e.g. --steps) when it is not a finite number within BOUNDS[name]."""
    from styleclip.util import checks

    key = ALIASES.get(name, name)
    lo, hi = BOUNDS[key]
    integer = isinstance(lo, int)
    if isinstance(value, str):  # from a form or an API call
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            pass
    if integer and isinstance(value, float) and value.is_integer():
        value = int(value)  # the app's number fields send 3.0
    return checks.number(value, label or flag(name), lo=lo, hi=hi, integer=integer, open_lo=key in OPEN_LO)
