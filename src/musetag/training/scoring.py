"""Validation scores used to pick the best epoch, computed by :mod:`musetag.evaluate` (the official
MediaEval arithmetic; decision thresholds are :mod:`musetag.training.decisions`).

The metric that picks the best epoch is the one the task reports: PR-AUC-macro for multilabel
tagging (MediaEval), accuracy for single-label classification (reported with balanced accuracy and
macro-F1, the figure emotion and genre papers give). Macro averages skip tags
without both a positive and a negative example in the split (they have no defined score), and the
number of tags scored is reported alongside.
"""
from __future__ import annotations

import numpy as np

from musetag.errors import EvaluationError


def reported_metric(task: str) -> str:
    if task == "regression":
        from musetag.evaluate.regression import REPORTED

        return REPORTED
    return "accuracy" if task == "multiclass" else "pr_auc_macro"


def _defined_columns(targets: np.ndarray) -> np.ndarray:
    positives = targets.sum(axis=0)
    return (positives > 0) & (positives < targets.shape[0])


def _finite(predictions: np.ndarray) -> np.ndarray:
    if not np.isfinite(predictions).all():
        raise EvaluationError("predictions contain NaN or infinite values; training diverged (lower the learning rate)")
    return predictions


def pr_auc_macro(predictions: np.ndarray, targets: np.ndarray) -> float:
    """``score(predictions, targets, "multilabel")["pr_auc_macro"]`` alone, for searches that score thousands of
    candidates: every tag's average precision in one vectorised pass (float32 scores stay float32, the faster
    packed-key path of the same values) instead of the whole table with ROC-AUC and the micro figures."""
    from musetag.evaluate.metrics import pr_auc_macro as mean_average_precision

    predictions = np.asarray(predictions)
    predictions = _finite(predictions if predictions.dtype == np.float32 else predictions.astype(np.float64))
    hot = np.asarray(targets) > 0
    cols = _defined_columns(hot)
    return mean_average_precision(hot[:, cols], predictions[:, cols]) if cols.any() else float("nan")


def score(predictions: np.ndarray, targets: np.ndarray, task: str) -> dict:
    """Scores of ``predictions`` (probabilities, ``(tracks, tags)``) against ``targets``
    (multi-hot ``(tracks, tags)`` or class indices ``(tracks,)``)."""
    from musetag.evaluate.metrics import mediaeval_table, multiclass_metrics

    if task == "regression":  # R², Pearson r, CCC per target (musetag.evaluate.regression)
        from musetag.evaluate.regression import regression_scores

        return regression_scores(predictions, targets)
    predictions = _finite(np.asarray(predictions, dtype=np.float64))
    if task == "multiclass":
        targets = np.asarray(targets).astype(np.int64).reshape(-1)
        found = multiclass_metrics(targets, predictions)
        out = {k: found[k] for k in ("accuracy", "balanced_accuracy", "f1_macro")}
        onehot = np.eye(predictions.shape[1])[targets]
        cols = _defined_columns(onehot)
        if cols.any():
            out["roc_auc_macro"] = mediaeval_table(onehot[:, cols], predictions[:, cols])["ROC-AUC-macro"]
        return out
    targets = np.asarray(targets, dtype=np.float64)
    cols = _defined_columns(targets)
    out = {"scored_tags": int(cols.sum())}
    if not cols.any():
        out["pr_auc_macro"] = float("nan")
        out["roc_auc_macro"] = float("nan")
        return out
    table = mediaeval_table(targets[:, cols], predictions[:, cols])
    out["pr_auc_macro"] = table["PR-AUC-macro"]
    out["roc_auc_macro"] = table["ROC-AUC-macro"]
    out["pr_auc_micro"] = table["PR-AUC-micro"]
    return out


def confusion(predictions: np.ndarray, targets: np.ndarray, classes: list[str]) -> dict:
    """The confusion matrix of single-label predictions with class names: ``{"classes": [...],
    "matrix": rows = true class, columns = predicted class}``."""
    from musetag.evaluate.metrics import multiclass_metrics

    targets = np.asarray(targets).astype(np.int64).reshape(-1)
    found = multiclass_metrics(targets, np.asarray(predictions), classes=list(classes))
    return {"classes": list(classes), "matrix": found["confusion_matrix"]}


def per_class_loss(predictions: np.ndarray, targets: np.ndarray, task: str) -> np.ndarray:
    """Per-tag binary cross-entropy of aggregated probabilities (multiclass: one-vs-rest); per-target squared
    error of the predicted values for regression (values are no probabilities: clipped into (0, 1) they gave a
    cross-entropy of numbers outside that range)."""
    if task == "regression":
        err = np.asarray(predictions, dtype=np.float64) - np.asarray(targets, dtype=np.float64).reshape(len(predictions), -1)
        return (err ** 2).mean(axis=0)
    p = np.clip(np.asarray(predictions, dtype=np.float64), 1e-7, 1 - 1e-7)
    t = np.asarray(targets)
    if task == "multiclass":
        t = np.eye(p.shape[1])[t.astype(np.int64).reshape(-1)]
    t = t.astype(np.float64)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=0)


def loss_value(predictions: np.ndarray, targets: np.ndarray, task: str) -> float:
    """Validation loss of aggregated outputs: mean BCE over tags (multilabel), NLL (multiclass), mean squared
    error (regression)."""
    p = np.clip(np.asarray(predictions, dtype=np.float64), 1e-7, 1.0)
    if task == "multiclass":
        t = np.asarray(targets).astype(np.int64).reshape(-1)
        return float(-np.log(p[np.arange(len(t)), t]).mean())
    return float(per_class_loss(predictions, targets, task).mean())
