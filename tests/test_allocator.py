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


_HELD = r"""
import ctypes, ctypes.util, json, os, sys
from musetag._allocator import trim_heap, tune_allocator
policy, trim = sys.argv[1], sys.argv[2] == "trim"
applied = tune_allocator(policy=policy)
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
blocks = []
for _ in range(2000):  # 64 KiB each: below the mmap threshold, so 125 MiB of heap
    b = libc.malloc(64 << 10)
    ctypes.memset(b, 1, 64 << 10)
    blocks.append(b)
pin = libc.malloc(64 << 10)  # a live block at the top: the heap cannot simply shrink from its end
ctypes.memset(pin, 1, 64 << 10)
for b in blocks:
    libc.free(b)
before = rss()
trimmed = trim_heap() if trim else False
print(json.dumps({"applied": applied, "trimmed": trimmed, "freed_mb": (before - rss()) / 2**20}))
"""


def _held(policy: str, trim: bool, setting: str = "") -> dict:
    env = {**os.environ, "MUSETAG_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", _HELD, policy, "trim" if trim else "keep"], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_server_policy_gives_freed_heap_memory_back():
    """125 MiB freed below a live block stays with the process until trim_heap (malloc_trim) returns it."""
    served, kept = _held("server", True), _held("server", False)
    if not served["applied"]:
        pytest.skip("not glibc: the allocator is left alone")
    assert served["trimmed"] is True and served["freed_mb"] > 100, served
    assert kept["freed_mb"] < 10, kept  # without the trim glibc keeps it (it is not at the heap's top)
    off = _held("server", True, setting="default")  # MUSETAG_MALLOC=default: nothing done
    assert off == {"applied": False, "trimmed": False, "freed_mb": off["freed_mb"]} and off["freed_mb"] < 10


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="batch, server"):
        tune_allocator({}, policy="fast")
