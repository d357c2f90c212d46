"""Average precision of many rows at once, for the searches that score thousands of candidate rows
(ensembles, bootstrap): the same values as ``sklearn.metrics.average_precision_score``, bit for bit
the same as the straightforward sort-and-walk in :mod:`musetag.evaluate.metrics`.

Where the time goes and what this module does about it:

- Sorting. A float32 score and its 0/1 label are packed into one integer key (the score's
  order-preserving bits, shifted left, the label in bit 0) and sorted by value: no argsort, no
  gathers. Non-negative scores (probabilities, ranks, means of them) fit a uint32 key, which sorts
  about twice as fast as the uint64 key that scores of either sign need.
- Walking the sorted rows. Only the positives contribute to AP (a few percent of the entries in a
  tagging set), so only they are visited: a positive's precision is taken at the end of its tie
  group, which is the positive itself unless the next-lower score equals it; the few tied positives
  find their group's end with one binary search.
"""
from __future__ import annotations

import numpy as np

_ROW_SHIFT = np.uint64(33)  # tie search: (row << 33) | score bits (up to 32 bits) is increasing across rows


def score_keys(st: np.ndarray, yt: np.ndarray) -> np.ndarray:
    """``(rows, tracks)`` float32 scores and bool labels -> integer keys, increasing with the score,
    label in bit 0 (uint32 when every score is >= 0, else uint64)."""
    bits = st.view(np.uint32)
    if bits.max(initial=0) < np.uint32(0x80000000):  # no sign bit: 31 bits of score + the label fit in 32
        keys = bits << np.uint32(1)
        keys |= yt
        return keys
    bits = (st + np.float32(0)).view(np.uint32)  # + 0 turns -0.0 into 0.0 (equal values, equal keys)
    bits = np.where(bits >> np.uint32(31) == 1, ~bits, bits | np.uint32(0x80000000))
    keys = bits.astype(np.uint64)
    keys <<= np.uint64(1)
    keys |= yt
    return keys


def ap_from_ascending_keys(keys: np.ndarray) -> np.ndarray:
    """AP of each row of ``keys`` (from :func:`score_keys`) sorted in increasing order; NaN for rows
    without positives.

    In decreasing-score order a positive at position p whose tie group ends at e (0-based) adds
    TP(e) / (e + 1), TP(e) being the positives up to e; AP is their mean. The contributions are
    summed per row in decreasing-score order (``np.bincount`` adds in input order), as a walk down
    the ranked list would."""
    k, n = keys.shape
    one = keys.dtype.type(1)
    fl = np.flatnonzero((keys & one).astype(bool))  # positives, increasing score within each row (bool: faster scan)
    rows = fl // n
    positives = np.bincount(rows, minlength=k)
    starts = np.cumsum(positives) - positives
    # decreasing-score order within each row: reverse every row's run of positives
    j_up = np.arange(fl.size) - starts[rows]
    order = starts[rows] + (positives[rows] - 1 - j_up)
    fl_down = np.empty_like(fl)
    fl_down[order] = fl
    q = fl_down - rows * n  # (rows is unchanged by the in-row reversal) increasing-order position
    tp = np.arange(1, fl.size + 1) - starts[rows]  # positives at or above each one, ties aside
    end = (n - 1) - q  # decreasing-order position of the positive
    flat_keys = keys.reshape(-1)
    score = flat_keys[fl_down] >> one
    tied = q > 0
    tied[tied] = (flat_keys[fl_down[tied] - 1] >> one) == score[tied]
    if tied.any():
        # the tie group ends (in decreasing order) at its lowest increasing-order position: find it
        # by a binary search over (row, score) in the rows that hold tied positives
        trows = np.unique(rows[tied])
        local = np.searchsorted(trows, rows[tied])
        combined = (np.arange(len(trows), dtype=np.uint64)[:, None] << _ROW_SHIFT) | (
            keys[trows] >> one).astype(np.uint64)
        wanted = (local.astype(np.uint64) << _ROW_SHIFT) | score[tied].astype(np.uint64)
        group_start = np.searchsorted(combined.reshape(-1), wanted, side="left") - local * n
        end[tied] = (n - 1) - group_start
        # positives at or above the group's end: those at increasing-order positions >= group_start
        below = np.searchsorted(fl, rows[tied] * n + group_start, side="left") - starts[rows[tied]]
        tp[tied] = positives[rows[tied]] - below
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.bincount(rows, weights=tp / (end + 1.0), minlength=k) / positives
    ap[positives == 0] = np.nan
    return ap


def average_precision_keyed(yt: np.ndarray, st: np.ndarray) -> np.ndarray:
    """AP of each row of float32 scores ``st`` ``(rows, tracks)`` against bool labels ``yt``."""
    keys = score_keys(st, yt)
    keys.sort(axis=1)
    return ap_from_ascending_keys(keys)
