"""Decision thresholds as in MediaEval: per tag, the score that maximises F1 on the
precision-recall curve, tuned on validation and applied to test.

This follows the organisers' ``calculate_decisions.py``: for each tag,
``precision_recall_curve`` gives the candidate thresholds, F1 = 2PR/(P+R) (NaN -> 0) is computed
at each point and the threshold of the first maximum is kept; decisions are
``predictions > threshold`` (strictly greater, as in the official script, so the tuned
threshold itself is not a positive).

A tag without a positive example gets ``+inf``: never on. The official script has no rule of its own
for it; under the scikit-learn of the challenge years its one candidate threshold was the highest score,
which ``>`` never exceeds (never on), while today's scikit-learn returns the lowest score (on for nearly
every track). ``+inf`` fixes the first reading whatever the version. JSON has no infinity, so where
thresholds are written as JSON (a package's ``musetag.json``, the service's ``/v1/tags``) a never-on
threshold is ``null`` (:func:`thresholds_to_json`, read back by :func:`thresholds_from_json`).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from musetag.errors import EvaluationError
from musetag.evaluate.metrics import as_scores, as_targets, check_same_shape, EvaluationWarning


def fit_thresholds(predictions, targets, *, tags: Sequence[str] | None = None, keep_f1: bool = False) -> np.ndarray:
    """Per-tag thresholds maximising F1 (official MediaEval procedure). A tag without positives
    gets +inf (never predicted), with a warning naming it.

    The curve's F1 counts ``score >= candidate`` while decisions are ``score > threshold``, so the
    official threshold drops the positive scored exactly at it. ``keep_f1=False`` keeps the candidate, as
    the organisers' script does (it reproduces their published thresholds); ``keep_f1=True`` (musetag's
    own training) places each threshold halfway to the next lower validation score, so the decisions switch
    on exactly the tracks the F1 was computed for."""
    from sklearn.metrics import precision_recall_curve

    pred = as_scores(predictions, name="validation predictions")
    gt = as_targets(targets, name="validation ground truth")
    check_same_shape(pred, gt, "validation predictions", "validation ground truth")
    thresholds = np.empty(gt.shape[1])
    missing = []
    for i in range(gt.shape[1]):
        if not gt[:, i].any():
            thresholds[i] = np.inf
            missing.append(tags[i] if tags is not None else f"column {i}")
            continue
        precision, recall, cand = precision_recall_curve(gt[:, i], pred[:, i])
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        # f1 has one more point than cand (recall 0, precision 1); it is never the maximum when a
        # positive exists, but guard anyway
        best = float(cand[min(int(np.argmax(f1)), len(cand) - 1)])
        thresholds[i] = _just_below(best, pred[:, i]) if keep_f1 else best
    if missing:
        warnings.warn(f"no positive example to tune a threshold for: {', '.join(missing)} "
                      "(threshold set to +inf: never predicted)", EvaluationWarning, stacklevel=2)
    return thresholds


def _just_below(score: float, column: np.ndarray) -> float:
    """A threshold under which ``column > threshold`` keeps ``score`` and everything above it: halfway to the
    next lower score (in float32 too, the precision networks score in); the float32 step below when none is
    lower; never under 0."""
    lower = column[column < score]
    if lower.size:
        return float((score + float(lower.max())) / 2)
    return max(0.0, float(np.nextafter(np.float32(score), np.float32(-1.0))))


def thresholds_to_json(thresholds) -> list[float | None] | None:
    """Thresholds as JSON values: ``+inf`` (never on) as ``None``; ``None`` (no thresholds) stays ``None``."""
    if thresholds is None:
        return None
    return [None if float(t) == float("inf") else float(t) for t in thresholds]


def thresholds_from_json(values) -> list[float] | None:
    """The inverse of :func:`thresholds_to_json`: ``None`` entries are ``+inf`` (never on)."""
    if values is None:
        return None
    return [float("inf") if v is None else float(v) for v in values]


def apply_thresholds(predictions, thresholds) -> np.ndarray:
    """Boolean decisions ``predictions > thresholds`` (per column)."""
    pred = as_scores(predictions)
    th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if pred.ndim != 2 or pred.shape[1] != len(th):
        raise EvaluationError(f"{len(th)} thresholds for predictions of shape {pred.shape}: "
                              "one threshold per tag column is needed")
    probabilities = th.size and th.min() >= 0.0 and th.max() <= 1.0
    if probabilities and pred.size and (pred.min() < -1e-6 or pred.max() > 1 + 1e-6):
        # logits (or a 0-100 scale) against thresholds tuned on probabilities: decisions that mean nothing
        raise EvaluationError(
            f"the predictions range from {pred.min():.3g} to {pred.max():.3g}, but the thresholds are probabilities "
            "(tuned on scores in [0, 1]): pass probabilities (a sigmoid of logits), on the scale the thresholds were "
            "tuned on")
    return pred > th[None, :]


def save_thresholds(thresholds, path: str | Path, tags: Sequence[str] | None = None) -> Path:
    """Write ``tag<TAB>threshold`` lines (the organisers' ``thresholds.txt`` layout)."""
    th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    names = list(tags) if tags is not None else [str(i) for i in range(len(th))]
    if len(names) != len(th):
        raise EvaluationError(f"{len(names)} tags for {len(th)} thresholds")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}\t{repr(float(t))}\n" for n, t in zip(names, th)), encoding="utf-8")
    return path


def load_thresholds(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a thresholds file (``tag<TAB>value`` per line, or one value per line; unnamed lines are named by
    their position). A NaN is refused (it silently never decides); ``inf`` is a never-on tag."""
    from musetag.textfiles import read_text

    names, values = [], []
    for n, line in enumerate(read_text(path, "thresholds file", error=EvaluationError).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rstrip("\r").split("\t")
        try:
            value = float(parts[-1])
        except ValueError:
            raise EvaluationError(f"{path}:{n}: expected 'tag<TAB>threshold', found {line!r}") from None
        name = parts[0] if len(parts) > 1 else str(len(names))
        if np.isnan(value):
            raise EvaluationError(f"{path}:{n}: the threshold of {name!r} is NaN; give a number (inf: never on)")
        values.append(value)
        names.append(name)
    return names, np.asarray(values)


def thresholds_for(path: str | Path, tags: Sequence[str] | None, *,
                   official: Sequence[str] | None = None) -> np.ndarray:
    """The thresholds of ``path`` in the order of ``tags`` (the predictions' columns): matched by name when the
    file names its tags and ``tags`` are known (a ``mood/theme---`` prefix on either side is ignored), by
    position otherwise; names that do not match the columns are an error naming the differences. Unnamed columns
    (``tags`` None) are taken as ``official`` (the MediaEval order) when the file names exactly those tags."""
    names, values = load_thresholds(path)
    if names == [str(i) for i in range(len(names))]:
        return values

    def key(tag: str) -> str:
        return str(tag).split("---", 1)[-1]

    if tags is None:
        if official is None or sorted(map(key, names)) != sorted(map(key, official)):
            warnings.warn(f"{path}: applied by position: the file names its tags but the predictions' columns have "
                          "no names (pass --tags)", EvaluationWarning, stacklevel=2)
            return values
        tags = official

    if sorted(map(str, names)) == sorted(map(str, tags)) and len(set(names)) == len(names):  # the same names
        where = {str(n): i for i, n in enumerate(names)}
        return values[[where[str(t)] for t in tags]]
    where = {key(n): i for i, n in enumerate(names)}  # else without the category prefixes
    wanted = [key(t) for t in tags]
    missing = [t for t in wanted if t not in where]
    extra = sorted(set(where) - set(wanted))
    if missing or extra or len(where) != len(names):
        twice = len(where) != len(names)
        raise EvaluationError(
            f"{path}: its tag names do not match the predictions' {len(tags)} columns"
            + (f"; no threshold for: {', '.join(missing[:5])}" if missing else "")
            + (f"; not a column: {', '.join(extra[:5])}" if extra else "")
            + ("; a tag named twice" if twice else "")
            + ": give the thresholds of these tags (or --tags naming the columns)")
    return values[[where[t] for t in wanted]]
