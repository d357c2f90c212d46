"""One cached array on disk: written atomically, and the sums its cache's statistics are built from.

Shared by the feature cache (:mod:`musetag.data.cache`) and the embedding presets
(:mod:`musetag.data.embed_features`), which the cache calls: it lives apart so neither imports the other back.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from musetag.outputs import removed_on_error

#: bumped whenever arrays computed from audio change for the same settings, so an older cache is
#: refused instead of mixed with new arrays. 2: the "linear" resampler is libsamplerate at
#: Essentia's single-precision ratio (jamendo96 arrays computed before differ by up to several dB).
#: 3: jamendo96 decodes as Essentia does (``decoder="essentia"``: FFmpeg's fixed-point MP3 decoder through
#: PyAV); arrays computed from libmpg123/libsndfile audio differ by up to a few dB in quiet bins.
CACHE_VERSION = 3


def _band_axis_sums(array: np.ndarray, kind: str) -> tuple[float, float, int, list[float] | None, list[float] | None]:
    x = np.asarray(array, dtype=np.float64)
    total, total_sq, count = float(x.sum()), float(np.square(x).sum()), int(x.size)
    if kind in ("mel", "embedding") and x.ndim >= 2:  # embeddings (dim, 1): per-dimension statistics
        per = np.moveaxis(x, -2, 0).reshape(x.shape[-2], -1)
        return total, total_sq, count, per.sum(axis=1).tolist(), np.square(per).sum(axis=1).tolist()
    return total, total_sq, count, None, None


def _summary(array: np.ndarray, kind: str) -> dict[str, Any]:
    total, total_sq, count, band, band_sq = _band_axis_sums(array, kind)
    return {"shape": list(array.shape), "sum": total, "sumsq": total_sq, "count": count,
            "band_sum": band, "band_sumsq": band_sq}


def save_array_atomically(final: Path, array: np.ndarray) -> None:
    """Write ``final`` (.npy) under a temporary name of this process, synced, then renamed into place: a
    killed run never leaves a half-written array (and a stale temporary names the process that wrote it)."""
    tmp = final.with_name(f"{final.stem}.tmp-{os.getpid()}.npy")
    with removed_on_error(tmp):  # a full disk or a failed write: no half-written temporary is left behind
        with open(tmp, "wb") as handle:
            np.save(handle, array)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
