"""Keep a forward pass's large buffers in the process heap (glibc ``mallopt``).

glibc serves every allocation above its mmap threshold (128 KiB, adapting up to 32 MiB) with a
fresh ``mmap`` and returns it with ``munmap`` on free. A network's activations on long windows are
tens to hundreds of MB per batch (the FCN on 16 windows of 29 s: about 1 GB), so every batch maps,
zero-fills page by page and unmaps them again: on this project's CPU machine that was as much
system time as the arithmetic itself (``bench/allocator.py``). Raising the mmap and trim thresholds
to 1 GiB lets freed buffers be reused from the heap by the next batch.

The price: up to 1 GiB of freed memory may stay with the process instead of going back to the
system at once (it is reused by the next batch, and returned when the heap top shrinks below that).
``MUSETAG_MALLOC=default`` keeps glibc's behaviour. Other C libraries (musl) and platforms are left
alone. The command line applies it at start-up (:func:`musetag.cli.main`); library users can call
:func:`tune_allocator` themselves.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping

ENV = "MUSETAG_MALLOC"
THRESHOLD_BYTES = 1 << 30
_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3


def tune_allocator(env: Mapping[str, str] | None = None) -> bool:
    """Raise glibc's mmap and trim thresholds to :data:`THRESHOLD_BYTES`; True when applied.
    ``MUSETAG_MALLOC=default`` (or 0/off) leaves the allocator alone."""
    env = os.environ if env is None else env
    if str(env.get(ENV, "")).strip().lower() in ("default", "0", "off", "no", "false"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only: musl has mallopt as a no-op stub
    except (OSError, AttributeError):
        return False
    del gnu_get_libc_version
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES) == 1 and mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES) == 1
