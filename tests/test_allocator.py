"""glibc allocator tuning (musetag._allocator): large buffers freed and allocated again come from the heap.

Known answer without timing: the minor page faults of allocating (glibc malloc), touching and
freeing a 64 MB buffer 20 times. With glibc's defaults each round maps fresh pages; tuned, the
pages of the first round are reused, so about 20 times fewer faults.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from musetag._allocator import tune_allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")

_PROBE = r"""
import ctypes, ctypes.util, json, resource
from musetag._allocator import tune_allocator
applied = tune_allocator()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = libc.malloc(64 << 20)
    ctypes.memset(a, 1, 64 << 20)  # touch every page
    libc.free(a)
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(setting: str) -> dict:
    env = {**os.environ, "MUSETAG_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_freed_large_buffers_are_reused_instead_of_faulted_in_again():
    default, tuned = _faults("default"), _faults("")
    if not tuned["applied"]:
        pytest.skip("not glibc: the allocator is left alone")
    assert default["applied"] is False
    # a fresh mapping every round (pages of 4 KiB, or fewer faults with transparent huge pages) against the
    # first round's pages reused
    assert tuned["faults"] * 5 < default["faults"], (tuned, default)


def test_switched_off_by_the_environment():
    assert tune_allocator({"MUSETAG_MALLOC": "default"}) is False
    assert tune_allocator({"MUSETAG_MALLOC": "off"}) is False
