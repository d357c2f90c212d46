"""Validation scores used to pick the best epoch, and decision thresholds.

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


def score(predictions: np.ndarray, targets: np.ndarray, task: str) -> dict:
    """Scores of ``predictions`` (probabilities, ``(tracks, tags)``) against ``targets``
    (multi-hot ``(tracks, tags)`` or class indices ``(tracks,)``)."""
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

    if task == "regression":  # R², Pearson r, CCC per target (musetag.evaluate.regression)
        from musetag.evaluate.regression import regression_scores

        return regression_scores(predictions, targets)
    predictions = np.asarray(predictions, dtype=np.float64)
    if not np.isfinite(predictions).all():
        raise EvaluationError("predictions contain NaN or infinite values; training diverged (lower the learning rate)")
    if task == "multiclass":
        targets = np.asarray(targets).astype(np.int64).reshape(-1)
        decided = predictions.argmax(axis=1)
        labels = np.arange(predictions.shape[1])
        out = {"accuracy": float((decided == targets).mean()),
               "balanced_accuracy": float(_balanced_accuracy(balanced_accuracy_score, targets, decided)),
               "f1_macro": float(f1_score(targets, decided, labels=labels, average="macro", zero_division=0))}
        onehot = np.eye(predictions.shape[1])[targets]
        cols = _defined_columns(onehot)
        if cols.any():
            out["roc_auc_macro"] = float(roc_auc_score(onehot[:, cols], predictions[:, cols], average="macro"))
        return out
    targets = np.asarray(targets, dtype=np.float64)
    cols = _defined_columns(targets)
    out = {"scored_tags": int(cols.sum())}
    if not cols.any():
        out["pr_auc_macro"] = float("nan")
        out["roc_auc_macro"] = float("nan")
        return out
    t, p = targets[:, cols], predictions[:, cols]
    out["pr_auc_macro"] = float(average_precision_score(t, p, average="macro"))
    out["roc_auc_macro"] = float(roc_auc_score(t, p, average="macro"))
    out["pr_auc_micro"] = float(average_precision_score(t, p, average="micro"))
    return out


def _balanced_accuracy(fn, targets, decided) -> float:
    import warnings

    with warnings.catch_warnings():  # a class predicted but absent from the split: scikit-learn warns
        warnings.simplefilter("ignore")
        return fn(targets, decided)


def confusion(predictions: np.ndarray, targets: np.ndarray, classes: list[str]) -> dict:
    """The confusion matrix of single-label predictions with class names: ``{"classes": [...],
    "matrix": rows = true class, columns = predicted class}``."""
    from sklearn.metrics import confusion_matrix

    targets = np.asarray(targets).astype(np.int64).reshape(-1)
    decided = np.asarray(predictions).argmax(axis=1)
    matrix = confusion_matrix(targets, decided, labels=np.arange(len(classes)))
    return {"classes": list(classes), "matrix": matrix.tolist()}


def per_class_loss(predictions: np.ndarray, targets: np.ndarray, task: str) -> np.ndarray:
    """Per-tag binary cross-entropy of aggregated probabilities (multiclass: one-vs-rest)."""
    p = np.clip(np.asarray(predictions, dtype=np.float64), 1e-7, 1 - 1e-7)
    t = np.asarray(targets)
    if task == "multiclass":
        t = np.eye(p.shape[1])[t.astype(np.int64).reshape(-1)]
    t = t.astype(np.float64)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=0)


def loss_value(predictions: np.ndarray, targets: np.ndarray, task: str) -> float:
    """Validation loss of aggregated outputs: mean BCE over tags (multilabel), NLL (multiclass)."""
    p = np.clip(np.asarray(predictions, dtype=np.float64), 1e-7, 1.0)
    if task == "multiclass":
        t = np.asarray(targets).astype(np.int64).reshape(-1)
        return float(-np.log(p[np.arange(len(t)), t]).mean())
    return float(per_class_loss(predictions, targets, task).mean())


def max_f1_thresholds(predictions: np.ndarray, targets: np.ndarray) -> list[float]:
    """Per-tag threshold maximising F1 on a precision-recall curve (the MediaEval practice: tune
    on validation, apply to test). Tags without positives get 0.5."""
    from sklearn.metrics import precision_recall_curve

    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets)
    thresholds = []
    for j in range(predictions.shape[1]):
        if targets[:, j].sum() == 0:
            thresholds.append(0.5)
            continue
        precision, recall, th = precision_recall_curve(targets[:, j], predictions[:, j])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        best = int(np.argmax(f1[:-1])) if len(th) else 0
        thresholds.append(float(th[best]) if len(th) else 0.5)
    return thresholds
