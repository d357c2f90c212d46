"""Scores of tag predictions, identical to the official MediaEval (MTG-Jamendo) evaluation.

The official script (``mtg-jamendo-dataset/scripts/mediaeval/evaluate.py``) computes, with
scikit-learn, for ``average`` in (macro, micro): ``roc_auc_score`` and ``average_precision_score``
on the scores, and ``precision_recall_fscore_support`` on boolean decisions, and writes them as a
two-column TSV in this order::

    ROC-AUC-macro, PR-AUC-macro, precision-macro, recall-macro, F-score-macro,
    ROC-AUC-micro, PR-AUC-micro, precision-micro, recall-micro, F-score-micro

(without decisions the precision/recall/F rows are absent). :func:`mediaeval_table` calls the same
scikit-learn functions, so the numbers match the published result files to every printed decimal.

One deliberate difference: a tag with no positive example in the ground truth makes
``roc_auc_score`` fail in the official script; here the tag is excluded from every row (macro and
micro) with an :class:`EvaluationWarning` naming it.

The vectorised :func:`average_precision_per_tag` and :func:`roc_auc_per_tag` compute the same
per-tag values as scikit-learn (ties handled identically) for many columns at once; ensembles and
bootstrap resampling use them because they are an order of magnitude faster than a loop over
scikit-learn calls.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from musetag.errors import EvaluationError

TABLE_ROWS = (
    "ROC-AUC-macro", "PR-AUC-macro", "precision-macro", "recall-macro", "F-score-macro",
    "ROC-AUC-micro", "PR-AUC-micro", "precision-micro", "recall-micro", "F-score-micro",
)
DECISION_ROWS = {"precision-macro", "recall-macro", "F-score-macro", "precision-micro", "recall-micro",
                 "F-score-micro"}


class EvaluationWarning(UserWarning):
    """Something was scored, but not quite as asked (a tag excluded, boolean scores...)."""


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _label(name: str | None, default: str) -> str:
    return str(name) if name else default


def as_scores(predictions, *, name: str | None = None) -> np.ndarray:
    """Scores as a finite float64 array; boolean scores are accepted with a warning."""
    what = _label(name, "predictions")
    arr = np.asarray(predictions)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise EvaluationError(f"{what}: expected a numeric array of scores, found dtype {arr.dtype}")
    if arr.dtype == bool:
        warnings.warn(
            f"{what} is boolean (hard decisions), not scores: ROC-AUC and PR-AUC computed on 0/1 values "
            "are much lower than on probabilities; pass the model's float outputs as predictions and the "
            "booleans as decisions", EvaluationWarning, stacklevel=3)
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        rows = np.unique(np.nonzero(bad)[0] if arr.ndim > 1 else np.nonzero(bad)[0])
        kind = "NaN" if np.isnan(arr).any() else "infinite"
        raise EvaluationError(
            f"{what} contains {int(bad.sum())} {kind} value(s) (first rows: {rows[:5].tolist()}); "
            "a model that diverged or a broken export produced them: re-run inference or drop those tracks "
            "from both predictions and ground truth")
    return arr


def as_targets(targets, *, name: str | None = None) -> np.ndarray:
    """Ground truth as a boolean matrix; values other than 0/1 are refused."""
    what = _label(name, "ground truth")
    arr = np.asarray(targets)
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise EvaluationError(f"{what}: expected a 0/1 or boolean matrix, found dtype {arr.dtype}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
            raise EvaluationError(
                f"{what} holds one class index per track (e.g. {bad.tolist()}): the ground truth of a multiclass "
                "(single-label) task; score it with --task multiclass")
        raise EvaluationError(
            f"{what} holds values other than 0 and 1 (e.g. {bad.tolist()}); is it a prediction matrix "
            "passed as ground truth? Pass the multi-hot ground truth (tracks x tags), or, for numeric targets "
            "(a regression run's *_targets.npy), score it with --task regression")
    return arr.astype(bool)


def as_decisions(decisions, *, name: str | None = None) -> np.ndarray:
    what = _label(name, "decisions")
    arr = np.asarray(decisions)
    if arr.dtype == bool:
        return arr
    if np.issubdtype(arr.dtype, np.number) and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise EvaluationError(
        f"{what}: decisions must be boolean (or 0/1), found {arr.dtype} values such as "
        f"{np.unique(arr)[:3].tolist()}; threshold the scores first (musetag score --thresholds-from "
        "VAL_PRED.npy VAL_GT.npy) or pass them as predictions")


def check_same_shape(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    if a.ndim != 2:
        raise EvaluationError(f"{a_name}: expected a (tracks, tags) matrix, found shape {a.shape}")
    if a.shape != b.shape:
        if a.ndim == b.ndim == 2 and a.shape == b.shape[::-1]:
            # the one with fewer rows than columns is the transposed one (tracks outnumber tags)
            (bad, shape), good = ((a_name, a.shape), b.shape) if a.shape[0] < a.shape[1] else ((b_name, b.shape), a.shape)
            detail = (f"{bad} looks transposed: it has {shape[0]} rows and {shape[1]} columns where "
                      f"{good[0]} tracks x {good[1]} tags are expected; transpose it "
                      "(np.save(path, np.load(path).T))")
        elif a.ndim == b.ndim == 2 and a.shape[0] != b.shape[0]:
            detail = (f"{a.shape[0]} rows vs {b.shape[0]}: the files cover different tracks (a different split, "
                      "or segments not aggregated to tracks); rows must be the same tracks in the same order")
        elif a.ndim == b.ndim == 2:
            detail = (f"{a.shape[1]} columns vs {b.shape[1]}: a different tag vocabulary; "
                      "columns must be the same tags in the same order")
        else:
            detail = "different number of dimensions"
        raise EvaluationError(f"{a_name} has shape {a.shape} but {b_name} has shape {b.shape} ({detail})")


def scorable_columns(targets: np.ndarray, tags: Sequence[str] | None = None, *, split: str = "") -> np.ndarray:
    """Boolean mask of the tags that have at least one positive; warns, naming every excluded tag."""
    positives = targets.sum(axis=0)
    keep = positives > 0
    if not keep.all():
        idx = np.nonzero(~keep)[0]
        names = [tags[i] if tags is not None else f"column {i}" for i in idx]
        where = f" in {split}" if split else ""
        warnings.warn(
            f"{len(idx)} tag(s) have no positive example{where} and are excluded from every score: "
            + ", ".join(names), EvaluationWarning, stacklevel=3)
    if not keep.any():
        raise EvaluationError("no tag has a positive example in the ground truth: nothing can be scored")
    return keep


# --------------------------------------------------------------------------------------------
# the official table
# --------------------------------------------------------------------------------------------
def mediaeval_table(groundtruth, predictions, decisions=None, *, tags: Sequence[str] | None = None) -> dict:
    """The official MediaEval result table as an ordered ``{row name: value}`` dict.

    ROC-AUC and PR-AUC repeat scikit-learn's arithmetic operation for operation in numpy
    (:func:`sklearn_roc_auc` and :func:`sklearn_average_precision`: the same values, bit for bit,
    tested against scikit-learn) because importing scikit-learn costs seconds; the
    precision/recall/F rows of decisions call scikit-learn itself. Tags without a positive example
    are dropped with a warning first.
    """
    gt = as_targets(groundtruth)
    pred = as_scores(predictions)
    check_same_shape(pred, gt, "predictions", "ground truth")
    dec = None
    if decisions is not None:
        dec = as_decisions(decisions)
        check_same_shape(dec, gt, "decisions", "ground truth")
    if tags is not None and len(tags) != gt.shape[1]:
        raise EvaluationError(f"{len(tags)} tag names for {gt.shape[1]} columns: the tag list does not match")
    keep = scorable_columns(gt, tags)
    gt, pred = gt[:, keep], pred[:, keep]
    dec = dec[:, keep] if dec is not None else None
    out: dict[str, float] = {}
    for average in ("macro", "micro"):
        out[f"ROC-AUC-{average}"], out[f"PR-AUC-{average}"] = _sklearn_average(gt, pred, average)
        if dec is not None:
            from sklearn import metrics

            with warnings.catch_warnings():
                # the official script lets ill-defined precision be 0 (with sklearn's warning); keep
                # the value, drop the noise
                warnings.simplefilter("ignore")
                p, r, f, _ = metrics.precision_recall_fscore_support(gt, dec, average=average, zero_division=0)
            out[f"precision-{average}"] = float(p)
            out[f"recall-{average}"] = float(r)
            out[f"F-score-{average}"] = float(f)
    return {k: out[k] for k in TABLE_ROWS if k in out}


def _sklearn_average(gt: np.ndarray, pred: np.ndarray, average: str) -> tuple[float, float]:
    """(ROC-AUC, PR-AUC) as scikit-learn's ``_average_binary_score`` (no sample weights): micro ravels
    in C order, macro is ``np.average`` of the per-column values. One sort per column serves both."""
    if average == "micro":
        curve = _sklearn_curve(gt.ravel(), pred.ravel())
        return _roc_from_curve(*curve), _ap_from_curve(*curve)
    roc, ap = np.zeros(gt.shape[1]), np.zeros(gt.shape[1])
    for c in range(gt.shape[1]):
        curve = _sklearn_curve(gt[:, c], pred[:, c])
        roc[c], ap[c] = _roc_from_curve(*curve), _ap_from_curve(*curve)
    return float(np.average(roc)), float(np.average(ap))


def _sklearn_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sklearn.metrics.confusion_matrix_at_thresholds`` without weights: (fps, tps) at each
    distinct score, in decreasing score order. The order inside a tie never matters: only the
    cumulative counts at the end of each tie group are kept."""
    order = np.argsort(-y_score)
    s = y_score[order]
    y = y_true[order].astype(np.float64)
    distinct = np.nonzero(np.diff(s))[0]
    threshold_idxs = np.concatenate([distinct, [y.size - 1]])
    tps = np.cumsum(y, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs.astype(np.float64) - tps
    return fps, tps


def sklearn_average_precision(y_true, y_score) -> float:
    """``sklearn.metrics.average_precision_score`` of one column, the same arithmetic (bit-identical)."""
    return _ap_from_curve(*_sklearn_curve(np.asarray(y_true), np.asarray(y_score, dtype=np.float64)))


def _ap_from_curve(fps: np.ndarray, tps: np.ndarray) -> float:
    ps = tps + fps
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(ps != 0, tps / ps, 0.0)
    recall = np.full(tps.shape, 1.0) if tps[-1] == 0 else tps / tps[-1]
    precision = np.concatenate((precision[::-1], [1.0]))
    recall = np.concatenate((recall[::-1], [0.0]))
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def sklearn_roc_auc(y_true, y_score) -> float:
    """``sklearn.metrics.roc_auc_score`` of one column, the same arithmetic (bit-identical); NaN
    when the column has only one class."""
    y_true = np.asarray(y_true)
    return _roc_from_curve(*_sklearn_curve(y_true, np.asarray(y_score, dtype=np.float64)))


def _roc_from_curve(fps: np.ndarray, tps: np.ndarray) -> float:
    if tps[-1] == 0 or fps[-1] == 0:  # one class only: sklearn warns and gives NaN
        return float("nan")
    if fps.shape[0] > 2:  # drop_intermediate=True
        keep = np.nonzero(np.concatenate([[True], np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), [True]]))[0]
        fps, tps = fps[keep], tps[keep]
    tps = np.concatenate([[0.0], tps])
    fps = np.concatenate([[0.0], fps])
    fpr = fps / fps[-1]
    tpr = tps / tps[-1]
    # sklearn.metrics.auc: fpr is increasing, then scipy's trapezoid
    d = fpr[1:] - fpr[:-1]
    return float(np.sum(d * (tpr[1:] + tpr[:-1]) / 2.0, dtype=np.float64))


def format_table(table: dict) -> str:
    """The table as the official TSV text (``name<TAB>value`` with six decimals)."""
    return "".join(f"{name}\t{value:.6f}\n" for name, value in table.items())


def write_table(table: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_table(table), encoding="utf-8")
    return path


def read_table(path: str | Path) -> dict:
    """Read an official ``results.tsv`` back into a dict."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            name, value = line.split("\t")
            out[name.strip()] = float(value)
    return out


# --------------------------------------------------------------------------------------------
# fast per-tag scores (same values as scikit-learn)
# --------------------------------------------------------------------------------------------
def average_precision_per_tag(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision of every column, as ``sklearn.metrics.average_precision_score(average=None)``.

    ``targets`` ``(n, k)`` bool, ``scores`` ``(n, k)``. Tied scores form one threshold, as in
    scikit-learn: every positive in a tie group gets the precision at the end of the group. Columns
    without positives give NaN. Works column-wise in one pass (sort, cumulative sums), so 1,000
    columns cost about as much as one scikit-learn call on each of a few dozen.
    """
    y = np.asarray(targets, dtype=bool)
    s = np.asarray(scores)
    if s.ndim == 1:
        return average_precision_per_tag(y[:, None], s[:, None])[0]
    # work on rows of a (k, n) contiguous array: sorting along the last axis is the fast path
    return average_precision_rows(np.ascontiguousarray(y.T), np.ascontiguousarray(s.T))


def average_precision_rows(yt: np.ndarray, st: np.ndarray) -> np.ndarray:
    """:func:`average_precision_per_tag` on transposed inputs: ``(columns, tracks)`` arrays.

    float32 scores (what ensembles and the bootstrap search with) take the faster path of
    :mod:`musetag.evaluate.rank_ap` (packed integer keys, only the positives visited): same values."""
    if st.dtype == np.float32:
        from musetag.evaluate.rank_ap import average_precision_keyed

        return average_precision_keyed(np.asarray(yt, dtype=bool), st)
    order = np.argsort(-st, axis=1)
    return _ap_sorted(np.take_along_axis(st, order, axis=1), np.take_along_axis(yt, order, axis=1))


def _ap_sorted(ss: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """AP of rows sorted by decreasing score (``ss`` any order-preserving values, ``yy`` labels).

    Only the positives are visited: the positive at sorted position p contributes the precision at the
    end of its tie group (tied scores form one threshold, as in scikit-learn): TP up to there / (end + 1).
    """
    k, n = ss.shape
    rows, pos = np.nonzero(yy)
    positives = np.bincount(rows, minlength=k)
    starts = np.cumsum(positives) - positives
    flat = rows * n + pos  # increasing
    is_end = np.empty((k, n), dtype=bool)
    is_end[:, -1] = True
    np.not_equal(ss[:, 1:], ss[:, :-1], out=is_end[:, :-1])
    ends = np.flatnonzero(is_end)
    end_flat = ends[np.searchsorted(ends, flat)]  # every row ends with a group end: never crosses rows
    tp = np.searchsorted(flat, end_flat, side="right") - starts[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.bincount(rows, weights=tp / (end_flat - rows * n + 1.0), minlength=k) / positives
    ap[positives == 0] = np.nan
    return ap


def roc_auc_per_tag(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC-AUC of every column (Mann-Whitney with mid-ranks for ties: equal to scikit-learn's
    trapezoidal ROC-AUC). Columns without both classes give NaN."""
    y = np.asarray(targets, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        return roc_auc_per_tag(y[:, None], s[:, None])[0]
    ranks = midranks(s)
    pos = y.sum(axis=0).astype(np.float64)
    neg = y.shape[0] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * y).sum(axis=0) - pos * (pos + 1) / 2) / (pos * neg)
    auc[(pos == 0) | (neg == 0)] = np.nan
    return auc


def midranks(scores: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """Column-wise ranks (1-based, ties get the mean of their ranks): ``scipy.stats.rankdata(scores,
    axis=0)`` without importing scipy.stats (a second of start-up). Works ``chunk`` columns at a time,
    so a 40-model stack costs a few of its columns' worth of memory, not ten copies of it."""
    s = np.asarray(scores, dtype=np.float64)
    n, k = s.shape
    out = np.empty((n, k))
    for c0 in range(0, k, chunk):
        block = np.ascontiguousarray(s[:, c0:c0 + chunk].T)  # (columns, tracks): sort along the last axis
        order = np.argsort(block, axis=1)  # any sort kind: tied values all get the same mid-rank
        ranks = np.empty(block.shape)
        np.put_along_axis(ranks, order, _midranks_sorted(np.take_along_axis(block, order, axis=1)), axis=1)
        out[:, c0:c0 + chunk] = ranks.T
    return out


def _midranks_sorted(ss: np.ndarray) -> np.ndarray:
    """Mid-ranks of rows already sorted increasingly: (first + last position of the tie group) / 2 + 1."""
    k, n = ss.shape
    start = np.ones((k, n), dtype=bool)  # a tie group starts here (every row starts one)
    np.not_equal(ss[:, 1:], ss[:, :-1], out=start[:, 1:])
    if start.all():  # no ties: the rank is the position
        return np.broadcast_to(np.arange(1.0, n + 1.0), (k, n))
    starts = np.flatnonzero(start)
    sizes = np.diff(np.append(starts, k * n))
    first = starts % n
    mid = (first + (first + sizes - 1)) / 2.0 + 1.0
    return mid[np.cumsum(start.reshape(-1)) - 1].reshape(k, n)


def pr_auc_macro(targets: np.ndarray, scores: np.ndarray) -> float:
    """Mean average precision over the tags with positives (the MediaEval ranking metric)."""
    return float(np.nanmean(average_precision_per_tag(targets, scores)))


def per_tag_scores(groundtruth, predictions, tags: Sequence[str] | None = None) -> list[dict]:
    """Per-tag ROC-AUC, PR-AUC, positives and prevalence; tags without positives get ``None`` scores."""
    gt = as_targets(groundtruth)
    pred = as_scores(predictions)
    check_same_shape(pred, gt, "predictions", "ground truth")
    names = list(tags) if tags is not None else [f"tag{i}" for i in range(gt.shape[1])]
    ap = average_precision_per_tag(gt, pred)
    auc = roc_auc_per_tag(gt, pred)
    rows = []
    for i, name in enumerate(names):
        n_pos = int(gt[:, i].sum())
        rows.append({
            "tag": name, "positives": n_pos, "prevalence": n_pos / gt.shape[0],
            "pr_auc": None if np.isnan(ap[i]) else float(ap[i]),
            "roc_auc": None if np.isnan(auc[i]) else float(auc[i]),
        })
    return rows


# --------------------------------------------------------------------------------------------
# multiclass
# --------------------------------------------------------------------------------------------
def multiclass_metrics(targets, predictions, *, classes: Sequence[str] | None = None) -> dict:
    """Accuracy, balanced accuracy, macro-F1 and the confusion matrix of single-label predictions.

    ``targets``: class indices ``(n,)`` (or one-hot ``(n, C)``). ``predictions``: class indices
    ``(n,)`` or scores ``(n, C)`` (argmax taken).
    """
    from sklearn import metrics

    y = np.asarray(targets)
    if y.ndim == 2:
        y = as_targets(y, name="ground truth")
        if not (y.sum(axis=1) == 1).all():
            raise EvaluationError("multiclass ground truth must have exactly one class per row; "
                                  "for several tags per track use task='multilabel'")
        y = y.argmax(axis=1)
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise EvaluationError(f"multiclass ground truth must be class indices, found {y.dtype}")
    p = np.asarray(predictions)
    if p.ndim == 2:
        scores = as_scores(p)
        n_classes = scores.shape[1]
        pred = scores.argmax(axis=1)
    elif p.ndim == 1:
        pred = p.astype(np.int64)
        n_classes = int(max(pred.max(initial=0), y.max(initial=0)) + 1)
    else:
        raise EvaluationError(f"multiclass predictions must be (tracks,) or (tracks, classes), found {p.shape}")
    if len(pred) != len(y):
        raise EvaluationError(f"{len(pred)} predictions for {len(y)} ground-truth rows: rows must be the same tracks")
    if classes is not None:
        n_classes = len(classes)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise EvaluationError(f"ground truth class indices must be in [0, {n_classes}), found {y.min()}..{y.max()}")
    labels = np.arange(n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "accuracy": float(metrics.accuracy_score(y, pred)),
            "balanced_accuracy": float(metrics.balanced_accuracy_score(y, pred)),
            "f1_macro": float(metrics.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
            "confusion_matrix": metrics.confusion_matrix(y, pred, labels=labels).tolist(),
        }
    out["classes"] = list(classes) if classes is not None else [str(i) for i in labels]
    return out
