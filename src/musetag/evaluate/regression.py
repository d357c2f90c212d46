"""Scores of regression outputs (``task = "regression"``): R², Pearson r and Lin's concordance
correlation coefficient (CCC) per target and their means.

For target ``j`` with predictions ``p`` and true values ``y`` over the tracks:

- ``R² = 1 - sum((y - p)^2) / sum((y - mean(y))^2)`` (scikit-learn's ``r2_score``; 1 is perfect, 0 is
  predicting the mean, negative is worse than that);
- Pearson ``r = cov(y, p) / (std(y) std(p))`` (``scipy.stats.pearsonr``): agreement up to scale and offset;
- ``CCC = 2 cov(y, p) / (var(y) + var(p) + (mean(y) - mean(p))^2)`` (Lin 1989; population moments),
  the emotion-regression literature's figure: r penalised for a shift or a scale error.

A target whose true values (or, for r and CCC, predictions) are constant has no defined score: NaN,
left out of the mean; ``scored_targets`` counts those defined. Imports numpy only.
"""
from __future__ import annotations

import numpy as np

from musetag.errors import EvaluationError

#: the figure a regression run is chosen and reported on
REPORTED = "r2_mean"


def _as_2d(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise EvaluationError(f"{name}: expected (tracks, targets) values, got shape {arr.shape}")
    return arr


def per_target(predictions, targets) -> dict[str, np.ndarray]:
    """``{"r2", "pearson_r", "ccc"}``: one value per target column (NaN where undefined)."""
    p, y = _as_2d(predictions, "predictions"), _as_2d(targets, "targets")
    if p.shape != y.shape:
        raise EvaluationError(f"predictions {p.shape} and targets {y.shape} differ in shape; score the same tracks "
                              "and targets")
    if not np.isfinite(p).all():
        raise EvaluationError("regression predictions contain NaN or infinite values; training diverged "
                              "(lower the learning rate or raise the regularisation)")
    dy, dp = y - y.mean(0), p - p.mean(0)
    var_y, var_p = (dy ** 2).mean(0), (dp ** 2).mean(0)
    cov = (dy * dp).mean(0)
    ss_res = ((y - p) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(var_y > 0, 1.0 - ss_res / (var_y * len(y)), np.nan)
        r = np.where((var_y > 0) & (var_p > 0), cov / np.sqrt(var_y * var_p), np.nan)
        ccc = np.where(var_y > 0, 2 * cov / (var_y + var_p + (y.mean(0) - p.mean(0)) ** 2), np.nan)
    return {"r2": r2, "pearson_r": r, "ccc": ccc}


def _mean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def regression_scores(predictions, targets, names=None) -> dict:
    """Means (``r2_mean``, ``pearson_r_mean``, ``ccc_mean``), ``scored_targets`` and, with ``names``,
    the per-target values (``r2/NAME``, ...). Fewer than 2 tracks: NaN everywhere."""
    y = _as_2d(targets, "targets")
    if len(y) < 2:
        return {"r2_mean": float("nan"), "pearson_r_mean": float("nan"), "ccc_mean": float("nan"), "scored_targets": 0}
    per = per_target(predictions, y)
    out = {"r2_mean": _mean(per["r2"]), "pearson_r_mean": _mean(per["pearson_r"]), "ccc_mean": _mean(per["ccc"]),
           "scored_targets": int(np.isfinite(per["r2"]).sum())}
    for key, values in per.items():
        for name, v in zip(names or [], values):
            out[f"{key}/{name}"] = float(v)
    return out
