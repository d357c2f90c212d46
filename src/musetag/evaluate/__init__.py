"""Evaluation identical to the official MediaEval scoring, decision thresholds, ensembles,
bootstrap statistics, reports and submissions.

``evaluate(predictions, targets, task="multilabel")`` is the one-call entry point (exposed as
``musetag.evaluate_predictions``)::

    from musetag.evaluate import evaluate
    result = evaluate(test_pred, test_gt, tags=tags, thresholds_from=(val_pred, val_gt))
    result["table"]["PR-AUC-macro"]
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from musetag.errors import EvaluationError
from musetag.evaluate.aggregation import aggregate_segments
from musetag.evaluate.metrics import (
    TABLE_ROWS,
    EvaluationWarning,
    average_precision_per_tag,
    format_table,
    mediaeval_table,
    multiclass_metrics,
    per_tag_scores,
    pr_auc_macro,
    read_table,
    roc_auc_per_tag,
    write_table,
)
from musetag.evaluate.thresholds import apply_thresholds, fit_thresholds, load_thresholds, save_thresholds

__all__ = [
    "evaluate", "mediaeval_table", "format_table", "write_table", "read_table", "TABLE_ROWS",
    "per_tag_scores", "average_precision_per_tag", "roc_auc_per_tag", "pr_auc_macro",
    "multiclass_metrics", "aggregate_segments", "fit_thresholds", "apply_thresholds",
    "save_thresholds", "load_thresholds", "load_array", "load_tags", "EvaluationWarning", "tags_beside",
]


def load_array(path: str | Path, what: str = "array") -> np.ndarray:
    """``np.load`` with errors that name the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"{what} file not found: {path}")
    if path.is_dir():
        raise EvaluationError(f"{what}: {path} is a folder; pass the .npy file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise EvaluationError(f"{what}: cannot read {path} ({exc.strerror or exc})") from None
    if head != b"\x93NUMPY" and not head.startswith(b"PK"):  # numpy would try it as a pickle and say so
        start = "it is empty" if not head else f"it starts with {head!r}"
        raise EvaluationError(f"{what}: {path} is not a NumPy .npy file ({start}); pass an array saved with "
                              "numpy.save (e.g. a training run's predictions/*.npy)")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any decode failure is the same user error
        raise EvaluationError(f"{what}: cannot read {path} as a NumPy .npy file ({exc}); "
                              "save it with numpy.save") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        raise EvaluationError(f"{what}: {path} is an .npz archive; save a single array with numpy.save")
    return arr


def load_tags(path: str | Path) -> list[str]:
    """Tag names, one per line (the official ``moodtheme_split.txt``); a TSV takes the first column."""
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"tag list not found: {path}")
    from musetag.textfiles import read_text

    text = read_text(path, "tag list", error=EvaluationError)
    tags = [line.rstrip("\r").split("\t")[0].strip() for line in text.splitlines()]
    tags = [t for t in tags if t]
    if len(set(tags)) != len(tags):
        raise EvaluationError(f"{path}: the tag list has duplicates")
    return tags


#: file names looked for beside predictions to name their columns (``tags.txt``: one tag per line)
TAG_FILES = ("tags.txt",)


def tags_beside(paths: Sequence[str | Path], n_tags: int | None = None) -> tuple[list[str] | None, str]:
    """Tag names for predictions found next to them: ``tags.txt`` in a file's folder, or the ``tags`` of
    a training run's ``summary.json`` (a run folder, or a file in its ``predictions/``). Returns
    ``(names or None, where they came from or why there are none)``; a list whose length is not
    ``n_tags`` is not used."""
    import json

    for item in paths:
        folder = _folder(item)
        for cand in [folder / name for name in TAG_FILES] + _summaries(folder):
            if not cand.is_file():
                continue
            try:
                names = (list(json.loads(cand.read_text(encoding="utf-8")).get("tags") or [])
                         if cand.suffix == ".json" else load_tags(cand))
            except (ValueError, OSError, EvaluationError, AttributeError):
                continue
            if names and (n_tags is None or len(names) == n_tags):
                return [str(t) for t in names], str(cand)
            if names:
                return None, f"{cand} lists {len(names)} tags, the predictions have {n_tags}"
    return None, "no tags.txt or run summary.json beside the predictions"


def task_beside(paths: Sequence[str | Path]) -> tuple[str | None, str | None]:
    """The ``task`` of the training run a file (or folder) belongs to, found as :func:`tags_beside` finds its
    ``summary.json``, and that file: ``(None, None)`` when there is none (prediction files from elsewhere)."""
    import json

    for item in paths:
        for summary in _summaries(_folder(item)):
            try:
                task = json.loads(summary.read_text(encoding="utf-8")).get("task")
            except (ValueError, OSError, AttributeError):
                continue
            if task in ("multilabel", "multiclass", "regression"):
                return task, str(summary)
    return None, None


def _folder(item: str | Path) -> Path:
    item = Path(item)
    return item if item.is_dir() else item.parent


def _summaries(folder: Path) -> list[Path]:
    """Where a training run's summary.json may lie for files in ``folder``: there, or above ``predictions/``."""
    return [folder / "summary.json"] + ([folder.parent / "summary.json"] if folder.name == "predictions" else [])


def no_tag_names_note(reason: str, flag: str = "--tags TAGS.txt") -> str:
    """The one line said (once per command) when files are written without tag names."""
    return (f"tag names unknown ({reason}): thresholds and per-tag files number the tags 0, 1, ...; "
            f"give {flag} (one tag per line) or put tags.txt beside the predictions")


def evaluate(predictions, targets, *, task: str = "multilabel", tags: Sequence[str] | None = None,
             decisions=None, thresholds=None, thresholds_from: tuple | None = None) -> dict:
    """Score predictions against ground truth.

    Multilabel (``task="multilabel"``): ``predictions`` ``(tracks, tags)`` scores, ``targets``
    multi-hot. Returns ``{"task", "table" (the official MediaEval rows), "per_tag" (list of
    dicts), "excluded_tags", "thresholds" (when decisions were derived), "n_tracks"}``. Decisions
    come from ``decisions`` (boolean matrix), or ``thresholds`` (one per tag), or are tuned on
    ``thresholds_from=(validation_predictions, validation_targets)`` as in MediaEval.

    Multiclass (``task="multiclass"``): ``targets`` class indices, ``predictions`` scores
    ``(tracks, classes)`` or indices; returns accuracy, balanced accuracy, macro-F1 and the
    confusion matrix (plus one-vs-rest ROC-AUC when scores are given).
    """
    if task == "multiclass":
        out = {"task": task, **multiclass_metrics(targets, predictions, classes=tags)}
        p = np.asarray(predictions)
        if p.ndim == 2:
            onehot = np.eye(p.shape[1], dtype=bool)[_class_indices(targets)]
            auc = roc_auc_per_tag(onehot, p.astype(np.float64))
            out["roc_auc_macro"] = float(np.nanmean(auc)) if np.isfinite(auc).any() else None
        out["n_tracks"] = int(len(p))
        return out
    if task != "multilabel":
        raise EvaluationError(f"unknown task {task!r}: use 'multilabel' or 'multiclass'")
    if sum(x is not None for x in (decisions, thresholds, thresholds_from)) > 1:
        raise EvaluationError("give only one of decisions, thresholds or thresholds_from")
    th = None
    if thresholds_from is not None:
        val_pred, val_gt = thresholds_from
        th = fit_thresholds(val_pred, val_gt, tags=tags)
    elif thresholds is not None:
        th = np.asarray(thresholds, dtype=np.float64)
    if th is not None:
        decisions = apply_thresholds(predictions, th)
    gt = np.asarray(targets)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = mediaeval_table(targets, predictions, decisions, tags=tags)
    for w in caught:  # re-emit so callers see them once, from here
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    per_tag = per_tag_scores(targets, predictions, tags)
    excluded = [row["tag"] for row in per_tag if row["positives"] == 0]
    out = {"task": task, "table": table, "per_tag": per_tag, "excluded_tags": excluded,
           "n_tracks": int(gt.shape[0])}
    if th is not None:
        out["thresholds"] = th.tolist()
    return out


def _class_indices(targets) -> np.ndarray:
    y = np.asarray(targets)
    return y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64)
