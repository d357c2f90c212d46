"""Per-tag decision thresholds of a multilabel run, and the rule that chose them.

``decision = "max_f1"`` tunes each tag's threshold for the highest F1 on validation: the official
MediaEval procedure, :func:`musetag.evaluate.thresholds.fit_thresholds` (a tag without validation
positives gets ``+inf``, never on).
On a small validation set a tag has a handful of positives and its F1-optimal threshold
is noise, usually far too low: with ~140 clips and 114 mood tags, 32 tags switched on for one clip.
``decision = "prior_rate"`` is calibrated instead: each tag's threshold is the validation score
quantile that switches the tag on for the share of tracks that carry it in the training labels, so
a clip gets about as many tags as a training clip has. ``decision = "auto"`` (the default) uses
``max_f1`` when the median tag has at least :data:`MIN_POSITIVES` positive validation tracks, else
``prior_rate``; the run's ``summary.json`` says which rule was used and why.
"""
from __future__ import annotations

import numpy as np

from musetag.evaluate.thresholds import fit_thresholds

#: median positive validation tracks per tag from which F1-tuned thresholds are trusted
MIN_POSITIVES = 20


def choose_rule(rule: str, val_targets: np.ndarray) -> tuple[str, str]:
    """``(rule, reason)`` for ``decision = rule`` (``auto`` resolved on the validation labels)."""
    positives = np.asarray(val_targets).sum(axis=0)
    median = float(np.median(positives)) if positives.size else 0.0
    if rule != "auto":
        return rule, f"decision = {rule!r} in the config"
    if median >= MIN_POSITIVES:
        return "max_f1", (f"the median tag has {median:g} positive validation tracks (>= {MIN_POSITIVES}): "
                          "per-tag F1-optimal thresholds are reliable")
    return "prior_rate", (f"the median tag has only {median:g} positive validation tracks (< {MIN_POSITIVES}): "
                          "F1-tuned thresholds would overfit, so each tag is switched on for its training "
                          "share of tracks")


def prior_rate_thresholds(val_pred: np.ndarray, train_targets: np.ndarray) -> list[float]:
    """Per tag, the validation score quantile above which the tag's training share of tracks lies
    (a tag never positive in training: 1.0, never on)."""
    val_pred = np.asarray(val_pred, dtype=np.float64)
    prior = np.asarray(train_targets, dtype=np.float64).mean(axis=0)
    out = []
    for j in range(val_pred.shape[1]):
        if prior[j] <= 0 or len(val_pred) == 0:
            out.append(1.0)
        else:
            out.append(float(np.quantile(val_pred[:, j], 1.0 - prior[j])))
    return out


def decision_thresholds(rule: str, val_pred: np.ndarray, val_targets: np.ndarray,
                        train_targets: np.ndarray, tags: list[str] | None = None) -> tuple[list[float], dict]:
    """The thresholds of ``rule`` (``auto`` | ``max_f1`` | ``prior_rate``) and a summary of the choice:
    ``{"rule", "reason", "tags_per_track_validation", "tags_per_track_train"}``."""
    used, reason = choose_rule(rule, val_targets)
    if used == "max_f1":
        thresholds = [float(t) for t in fit_thresholds(val_pred, val_targets, tags=tags, keep_f1=True)]
    else:
        thresholds = prior_rate_thresholds(val_pred, train_targets)
    # decided as packages decide (musetag.inference.result.TagResult.decisions): score > threshold
    on = (np.asarray(val_pred) > np.asarray(thresholds)[None, :]).sum(axis=1) if len(val_pred) else np.zeros(0)
    info = {"rule": used, "reason": reason,
            "tags_per_track_validation": float(on.mean()) if on.size else None,
            "tags_per_track_train": float(np.asarray(train_targets).sum(axis=1).mean()) if len(train_targets) else None}
    return thresholds, info
