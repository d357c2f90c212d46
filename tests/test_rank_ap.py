"""The fast AP kernel of the ensemble searches (musetag.evaluate.rank_ap) and the whole `auto` search
against straightforward references: scikit-learn's average_precision_score per row, and the plain
sort-and-walk of the float64 path, which must give the same values to the last bit."""
from __future__ import annotations

import numpy as np
import sklearn.metrics as skm

from musetag.evaluate import ensemble as ens
from musetag.evaluate.metrics import average_precision_rows
from musetag.evaluate.rank_ap import average_precision_keyed


def _rows(rng, trial):
    k, n = int(rng.integers(1, 40)), int(rng.integers(2, 300))
    st = rng.random((k, n))
    if trial % 3 == 1:  # ties, within and across positives and negatives
        st = np.round(st * int(rng.integers(2, 20))) / 7
    if trial % 5 == 2:  # scores of both signs take the 64-bit key
        st -= 0.5
    if trial % 7 == 3:  # a block of zeros, one of them negative zero
        st[:, : n // 2] = 0.0
        st[:, 0] = -0.0
    yt = rng.random((k, n)) < rng.uniform(0.0, 0.3)
    yt[0] = False  # a row without positives: NaN
    return yt, st.astype(np.float32)


def test_keyed_ap_equals_sklearn_and_the_plain_sort_bit_for_bit():
    rng = np.random.default_rng(3)
    for trial in range(30):
        yt, st = _rows(rng, trial)
        fast = average_precision_keyed(yt, st)
        plain = average_precision_rows(yt, st.astype(np.float64))  # argsort + walk every entry
        assert np.array_equal(fast, plain, equal_nan=True), trial
        assert np.isnan(fast[0])
        for r in range(1, min(len(yt), 8)):
            if yt[r].any():
                assert abs(fast[r] - skm.average_precision_score(yt[r], st[r])) < 1e-12, (trial, r)


def _plain_rows(yt, st):
    """Reference: the plain float64 path (argsort, then a walk over every entry)."""
    return average_precision_rows(np.asarray(yt, dtype=bool), np.asarray(st, dtype=np.float64))


def test_auto_search_equals_the_search_scored_the_plain_way(monkeypatch):
    """Every candidate's CV/validation/test score and the chosen weights of `auto` (ties in the scores,
    duplicated models) are exactly those of the same search with every AP computed the plain way."""
    rng = np.random.default_rng(5)
    n, k = 120, 4
    y = rng.random((n, k)) < 0.2
    y[:3] = True
    yt = rng.random((n, k)) < 0.2
    yt[:3] = True
    val = [np.round(1 / (1 + np.exp(-(q * (y * 2 - 1) + rng.normal(size=(n, k))))), 2) for q in (1.5, 0.3, 0.3)]
    test = [np.round(1 / (1 + np.exp(-(q * (yt * 2 - 1) + rng.normal(size=(n, k))))), 2) for q in (1.5, 0.3, 0.3)]
    val.append(val[1])  # a duplicated model: tied candidates in greedy and weights
    test.append(test[1])
    fast = ens.ensemble(val, y, test=test, test_targets=yt, method="auto", progress=False, folds=3)
    monkeypatch.setattr(ens, "average_precision_rows", _plain_rows)
    monkeypatch.setattr(ens, "average_precision_per_tag", lambda t, s: _plain_rows(np.asarray(t).T,
                                                                                   np.asarray(s).T))
    ref = ens.ensemble(val, y, test=test, test_targets=yt, method="auto", progress=False, folds=3)
    assert fast.method == ref.method and fast.weights == ref.weights and fast.params == ref.params
    assert fast.candidates == ref.candidates
    assert np.array_equal(fast.test_predictions, ref.test_predictions)
