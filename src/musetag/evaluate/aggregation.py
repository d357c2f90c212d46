"""Windows -> a track's score: the one aggregation rule of training's evaluation, the tagger and evaluate.

A track is cut into windows; the network scores each window; the track's score is

* ``mean``: the mean of the windows' probabilities (sigmoid for multilabel, softmax for multiclass; for
  regression the windows' values themselves);
* ``max``: their maximum;
* ``mean_logits``: the activation of the mean of the windows' logits.

:func:`aggregate_windows` applies the rule to one track's window outputs, :func:`aggregate_counts` to several
tracks' windows stacked in order (training's validation), and :class:`WindowAggregator` to windows arriving
batch by batch (the tagger, streaming long files); all three give the same numbers (float64 inside).
:func:`aggregate_segments` is the evaluation of segment-level predictions files: rows grouped by track id,
multilabel by the mean, multiclass by majority vote.
"""
from __future__ import annotations

import numpy as np

from musetag.errors import AudioError, EvaluationError, ModelError
from musetag.evaluate.metrics import as_scores

AGGREGATIONS = ("mean", "mean_logits", "max")


def activation(logits: np.ndarray, task: str) -> np.ndarray:
    """Probabilities of ``logits`` ``(..., classes)`` in float64: softmax for ``multiclass``, the values
    themselves for ``regression``, else sigmoid."""
    logits = np.asarray(logits).astype(np.float64)
    if task == "regression":
        return logits
    if task == "multiclass":
        z = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-logits))


def _check(how: str) -> None:
    if how not in AGGREGATIONS:
        raise ModelError(f"unknown segment aggregation {how!r}; use {', '.join(AGGREGATIONS)}")


class WindowAggregator:
    """The rule applied to window logits arriving in batches: ``add(logits)`` per batch ``(n, classes)``,
    then ``result()`` (float32 ``(classes,)``)."""

    def __init__(self, how: str, task: str) -> None:
        _check(how)
        self.how, self.task = how, task
        self.acc: np.ndarray | None = None
        self.count = 0

    def add(self, logits: np.ndarray) -> None:
        values = logits.astype(np.float64) if self.how == "mean_logits" else activation(logits, self.task)
        part = values.max(axis=0) if self.how == "max" else values.sum(axis=0)
        if self.acc is None:
            self.acc = part
        else:
            self.acc = np.maximum(self.acc, part) if self.how == "max" else self.acc + part
        self.count += values.shape[0]

    def result(self) -> np.ndarray:
        if self.acc is None:
            raise AudioError("no segments to score")
        if self.how == "max":
            out = self.acc
        elif self.how == "mean_logits":
            out = activation(self.acc / self.count, self.task)
        else:
            out = self.acc / self.count
        return out.astype(np.float32)


def aggregate_counts(logits: np.ndarray, counts: list[int], how: str, task: str) -> np.ndarray:
    """Track scores ``(tracks, classes)`` (float32) of window logits stacked track after track, ``counts[i]``
    windows for track ``i``: :class:`WindowAggregator` per track."""
    logits = np.asarray(logits)
    if sum(counts) != len(logits):
        raise ModelError(f"{len(logits)} window outputs for {sum(counts)} windows counted; give one count per track")
    rows, pos = [], 0
    for n in counts:
        agg = WindowAggregator(how, task)
        agg.add(logits[pos : pos + n])
        rows.append(agg.result())
        pos += n
    return np.stack(rows) if rows else np.zeros((0, logits.shape[-1] if logits.ndim > 1 else 0), np.float32)


def aggregate_windows(probabilities: np.ndarray, how: str, task: str = "multilabel") -> np.ndarray:
    """The file score from its windows' probabilities ``(n, tags)``, by the package's rule:
    ``mean`` (of probabilities), ``max``, or ``mean_logits`` (the activation of the mean logit;
    the logits are recovered from the probabilities: ``log(p / (1 - p))`` for multilabel,
    ``log p`` for multiclass, which softmax reads the same as the logits)."""
    p = np.asarray(probabilities, dtype=np.float64)
    _check(how)
    if how == "mean":
        return p.mean(axis=0)
    if how == "max":
        return p.max(axis=0)
    eps = 1e-12
    p = np.clip(p, eps, 1.0 - eps) if task != "multiclass" else np.clip(p, eps, 1.0)
    logits = np.log(p) if task == "multiclass" else np.log(p) - np.log1p(-p)
    return activation(logits.mean(axis=0), task)


def aggregate_segments(outputs, track_ids, *, task: str = "multilabel") -> tuple[np.ndarray, np.ndarray]:
    """Track-level outputs from segment-level ones.

    ``outputs`` ``(segments, tags)`` probabilities and ``track_ids`` ``(segments,)``. Multilabel:
    the mean of the probabilities of a track's segments. Multiclass: majority vote of the
    segments' argmax (ties broken by the highest mean probability); returns one-hot votes scaled to
    the vote share so that argmax gives the voted class. Returns ``(unique track ids in first-seen
    order, track outputs)``.
    """
    out = as_scores(outputs, name="segment outputs")
    ids = np.asarray(track_ids)
    if out.ndim != 2 or len(ids) != out.shape[0]:
        raise EvaluationError(f"segment outputs {out.shape} and {len(ids)} track ids: need one id per segment row")
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # first-seen order
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    inv = remap[inverse.reshape(-1)]
    n_tracks, n_cols = len(uniq), out.shape[1]
    counts = np.bincount(inv, minlength=n_tracks).astype(np.float64)
    mean = np.zeros((n_tracks, n_cols))
    np.add.at(mean, inv, out)
    mean /= counts[:, None]
    if task == "multilabel":
        return uniq[order], mean
    if task != "multiclass":
        raise EvaluationError(f"unknown task {task!r}: use 'multilabel' or 'multiclass'")
    votes = np.zeros((n_tracks, n_cols))
    np.add.at(votes, (inv, out.argmax(axis=1)), 1.0)
    share = votes / counts[:, None]
    # tie-break: among the most-voted classes, the highest mean probability
    top = share == share.max(axis=1, keepdims=True)
    winner = np.where(top, mean, -np.inf).argmax(axis=1)
    result = share.copy()
    result[np.arange(n_tracks), winner] += 1e-9
    return uniq[order], result
