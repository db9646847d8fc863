"""Process settings of the CLI and app (styleclip.util.runtime), each checked in a fresh interpreter."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Allocates and frees a 128 MB tensor (over glibc's 32 MB mmap ceiling) many times and reports the minor page
# faults of the last repeats: with glibc's default each repeat maps fresh pages (32k faults of 4 KiB); with freed
# memory kept, once the heap has grown to hold the pattern (it fragments: torch's 64-byte aligned requests do
# not fit an exactly-sized freed block), the repeats reuse its pages.
PROBE = r"""
import json, resource, sys
import torch
from styleclip.util.runtime import freed_memory_kept, keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def block():
    torch.ones(32 * 1024 * 1024).sum()
for _ in range(16):
    block()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    block()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4
print(json.dumps({"applied": applied, "again": keep_freed_memory() if applied else None,
                  "kept": freed_memory_kept(), "faults": faults}))
"""


def _probe(mode: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_keep_freed_memory_reuses_large_blocks():
    default = _probe("plain")
    kept = _probe("keep", STYLECLIP_KEEP_FREED_MEMORY="1")
    if not kept["applied"]:
        pytest.skip("C library without glibc's mallopt")
    assert kept["again"] is True and kept["kept"] is True  # idempotent
    assert default["faults"] > 20_000  # fresh mapping per 128 MB block: the cost this setting removes
    assert kept["faults"] < 0.05 * default["faults"]


def test_keep_freed_memory_can_be_switched_off():
    out = _probe("keep", STYLECLIP_KEEP_FREED_MEMORY="0")
    assert out["applied"] is False and out["kept"] is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_keep_freed_memory_can_be_undone():
    """keep=False (the CLI's --checkpoint-min-res: less memory asked for) brings large blocks back to mmap."""
    code = PROBE.replace('applied = keep_freed_memory() if sys.argv[1] == "keep" else False',
                         'applied = keep_freed_memory() and not keep_freed_memory(False)').replace(
                         '"again": keep_freed_memory() if applied else None', '"again": None')
    out = subprocess.run([sys.executable, "-c", code, "keep"], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if not res["applied"]:
        pytest.skip("C library without glibc's mallopt")
    assert res["kept"] is False and res["faults"] > 20_000  # fresh pages per block again


def test_cli_entry_point_applies_it():
    """`styleclip` (the console script, python -m styleclip) runs cli.main, which applies the setting first."""
    code = ("import sys; import styleclip.cli as c, styleclip.util.runtime as r\n"
            "sys.argv = ['styleclip', '--help']\n"
            "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
            "print(r.freed_memory_kept() == sys.platform.startswith('linux'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "STYLECLIP_KEEP_FREED_MEMORY": "1"})
    assert out.stdout.strip().splitlines()[-1] == "True"
