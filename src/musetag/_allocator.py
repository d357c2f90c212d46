"""glibc allocator policies (``mallopt``): one for batch work, one for a long-running server.

**batch** (the command line's default). glibc serves every allocation above its mmap threshold
(128 KiB, adapting up to 32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` on free. A
network's activations on long windows are tens to hundreds of MB per batch (the FCN on 16 windows of
29 s: about 1 GB), so every batch maps, zero-fills page by page and unmaps them again: on this
project's CPU machine that was as much system time as the arithmetic itself (``bench/allocator.py``).
Raising the mmap and trim thresholds to 1 GiB lets freed buffers be reused from the heap by the next
batch. The price: up to 1 GiB of freed memory may stay with the process, which a batch job that ends
can afford.

**server** (``musetag serve``). A server runs for days and handles requests of different sizes on
several threads: with the batch thresholds its freed memory stayed with it (``bench/service.py``: the
main process grew from 407 to 926 MB over 300 requests). The server keeps glibc's adaptive
thresholds, caps the number of malloc arenas (each thread that allocates may otherwise get its own
arena, each holding its own freed memory) and gives freed heap memory back after each request
(:func:`trim_heap`, ``malloc_trim``).

``MUSETAG_MALLOC=default`` keeps glibc's behaviour for either. Other C libraries (musl) and platforms
are left alone. The command line applies the policy its command asks for at start-up
(:func:`musetag.cli.main`); library users can call :func:`tune_allocator` themselves.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from functools import lru_cache

ENV = "MUSETAG_MALLOC"
POLICIES = ("batch", "server")
THRESHOLD_BYTES = 1 << 30
SERVER_ARENAS = 2
_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _disabled(env: Mapping[str, str] | None) -> bool:
    env = os.environ if env is None else env
    return str(env.get(ENV, "")).strip().lower() in ("default", "0", "off", "no", "false")


@lru_cache(maxsize=1)
def _glibc():
    """The C library when it is glibc (musl has mallopt as a no-op stub), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator(env: Mapping[str, str] | None = None, policy: str = "batch") -> bool:
    """Apply ``policy`` (:data:`POLICIES`); True when applied. ``batch``: glibc's mmap and trim
    thresholds at :data:`THRESHOLD_BYTES`. ``server``: glibc's adaptive thresholds kept, at most
    :data:`SERVER_ARENAS` malloc arenas. ``MUSETAG_MALLOC=default`` (or 0/off) leaves the allocator alone."""
    if policy not in POLICIES:
        raise ValueError(f"unknown allocator policy {policy!r}; use one of {', '.join(POLICIES)}")
    if _disabled(env):
        return False
    libc = _glibc()
    if libc is None:
        return False
    if policy == "server":
        return libc.mallopt(_M_ARENA_MAX, SERVER_ARENAS) == 1
    return libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES) == 1


def trim_heap(env: Mapping[str, str] | None = None) -> bool:
    """Give the heap's free memory back to the system (glibc ``malloc_trim(0)``); True when some was.
    A server calls it after each request; ``MUSETAG_MALLOC=default`` skips it."""
    if _disabled(env):
        return False
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))
