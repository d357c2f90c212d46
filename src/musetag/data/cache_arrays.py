"""One cached array on disk: written atomically, and the sums its cache's statistics are built from.

Shared by the feature cache (:mod:`musetag.data.cache`) and the embedding presets
(:mod:`musetag.data.embed_features`), which the cache calls: it lives apart so neither imports the other back.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


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
    with open(tmp, "wb") as handle:
        np.save(handle, array)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
