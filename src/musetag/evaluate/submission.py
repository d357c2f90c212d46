"""MediaEval Emotion and Theme Recognition submissions: ``predictions.npy`` (float scores) and
``decisions.npy`` (bool), 4,231 test tracks x 56 tags, rows in the official test-split order and
columns in the official (alphabetical) tag order, as the organisers' evaluation script reads them.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from musetag.errors import EvaluationError
from musetag.evaluate.metrics import as_decisions, as_scores, as_targets
from musetag.evaluate.thresholds import apply_thresholds, fit_thresholds, save_thresholds

log = logging.getLogger(__name__)

# The 56 mood/theme tags of the MediaEval split (tags/moodtheme_split.txt), in submission order.
_NAMES = (
    "action adventure advertising background ballad calm children christmas commercial cool corporate dark deep "
    "documentary drama dramatic dream emotional energetic epic fast film fun funny game groovy happy heavy holiday "
    "hopeful inspiring love meditative melancholic melodic motivational movie nature party positive powerful "
    "relaxing retro romantic sad sexy slow soft soundscape space sport summer trailer travel upbeat uplifting"
)
MEDIAEVAL_TAGS = tuple(f"mood/theme---{n}" for n in _NAMES.split())
MEDIAEVAL_TEST_TRACKS = 4231


def _normalise(tag: str) -> str:
    return tag if "---" in tag else f"mood/theme---{tag}"


def to_official_order(predictions: np.ndarray, tags: Sequence[str]) -> np.ndarray:
    """Reorder columns named ``tags`` to the official order; refuses a different vocabulary."""
    names = [_normalise(t) for t in tags]
    if len(names) != predictions.shape[1]:
        raise EvaluationError(f"{len(names)} tag names for {predictions.shape[1]} columns")
    missing = sorted(set(MEDIAEVAL_TAGS) - set(names))
    extra = sorted(set(names) - set(MEDIAEVAL_TAGS))
    if missing or extra:
        raise EvaluationError(
            "the predictions' tags are not the 56 MediaEval mood/theme tags"
            + (f"; missing: {', '.join(missing[:5])}" if missing else "")
            + (f"; not in the task: {', '.join(extra[:5])}" if extra else "")
            + ": train on the MediaEval split (moodtheme_split.txt) to submit")
    index = [names.index(t) for t in MEDIAEVAL_TAGS]
    if index != list(range(len(index))):
        log.info("reordered the columns to the official tag order")
    return predictions[:, index]


def validate_submission(predictions, decisions, *, n_tracks: int = MEDIAEVAL_TEST_TRACKS) -> None:
    """Raise :class:`EvaluationError` unless the pair is a valid MediaEval submission."""
    pred = np.asarray(predictions)
    dec = np.asarray(decisions)
    expected = (n_tracks, len(MEDIAEVAL_TAGS))
    for name, arr in (("predictions", pred), ("decisions", dec)):
        if arr.shape != expected:
            raise EvaluationError(f"{name} have shape {arr.shape}; a MediaEval submission is {expected} "
                                  "(test tracks in the official split order x the 56 tags)")
    if not np.issubdtype(pred.dtype, np.floating):
        raise EvaluationError(f"predictions must be float scores, found {pred.dtype}")
    if not np.isfinite(pred).all():
        raise EvaluationError("predictions contain NaN or infinite values")
    if dec.dtype != bool:
        raise EvaluationError(f"decisions must be boolean, found {dec.dtype}")
    if not dec.any(axis=0).any():
        raise EvaluationError("decisions are all False: every precision/recall/F-score would be 0; "
                              "check the thresholds")


def make_submission(predictions, out_dir: str | Path, *, decisions=None, thresholds=None,
                    validation: tuple | None = None, tags: Sequence[str] | None = None,
                    n_tracks: int = MEDIAEVAL_TEST_TRACKS, source: str | None = None) -> Path:
    """Write a validated submission folder: ``predictions.npy`` (float64), ``decisions.npy``
    (bool), ``thresholds.txt`` and ``submission.json``.

    Decisions come from ``decisions``, or ``thresholds``, or thresholds tuned (max F1 per tag) on
    ``validation=(validation_predictions, validation_targets)``, as MediaEval asks. ``tags`` names
    the columns when they are not already in the official order.
    """
    pred = as_scores(predictions, name="test predictions")
    if pred.ndim != 2:
        raise EvaluationError(f"test predictions must be (tracks, tags), found {pred.shape}")
    if tags is not None:
        pred = to_official_order(pred, tags)
    if pred.shape != (n_tracks, len(MEDIAEVAL_TAGS)):
        raise EvaluationError(
            f"test predictions have shape {pred.shape}; a MediaEval submission needs {n_tracks} x "
            f"{len(MEDIAEVAL_TAGS)} (the split-0 test tracks in the official order, the 56 mood/theme tags)")
    if pred.min() < 0 or pred.max() > 1:
        log.warning("scores outside [0, 1] (logits?): the ranking metrics do not mind, but the organisers "
                    "expect probabilities; apply a sigmoid first")
    th = None
    if sum(x is not None for x in (decisions, thresholds, validation)) != 1:
        raise EvaluationError("give exactly one source of decisions: decisions, thresholds, or validation "
                              "predictions and targets to tune per-tag thresholds on")
    if decisions is not None:
        dec = as_decisions(decisions)
        if tags is not None:
            dec = to_official_order(dec, tags)
    else:
        if validation is not None:
            vp, vt = validation
            vp = as_scores(vp, name="validation predictions")
            vt = as_targets(vt, name="validation targets")
            if tags is not None:
                vp, vt = to_official_order(vp, tags), to_official_order(vt, tags)
            th = fit_thresholds(vp, vt, tags=list(MEDIAEVAL_TAGS))
        else:
            th = np.asarray(thresholds, dtype=np.float64)
            if tags is not None:
                th = to_official_order(th[None, :], tags)[0]
        dec = apply_thresholds(pred, th)
    validate_submission(pred, dec, n_tracks=n_tracks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "predictions.npy", pred.astype(np.float64))
    np.save(out / "decisions.npy", dec)
    if th is not None:
        save_thresholds(th, out / "thresholds.txt", MEDIAEVAL_TAGS)
    meta = {"shape": list(pred.shape), "tags": list(MEDIAEVAL_TAGS), "source": source,
            "decisions_from": "decisions" if decisions is not None else
            "validation thresholds (max F1 per tag)" if validation is not None else "thresholds",
            "positives_per_track": float(dec.sum(axis=1).mean())}
    (out / "submission.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


def submission_from_run(run_dir: str | Path, out_dir: str | Path, **kw) -> Path:
    """Submission from a training run folder: ``predictions/test.npy``, thresholds tuned on
    ``predictions/validation.npy`` against ``predictions/validation_targets.npy``; tag names from
    ``summary.json`` when present."""
    run = Path(run_dir)
    pred_dir = run / "predictions"
    needed = [pred_dir / "test.npy", pred_dir / "validation.npy", pred_dir / "validation_targets.npy"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise EvaluationError(f"{run} is not a finished run folder: missing {', '.join(missing)} "
                              "(train with musetag train, which writes them after the last epoch)")
    tags = kw.pop("tags", None)
    summary = run / "summary.json"
    if tags is None and summary.exists():
        tags = json.loads(summary.read_text(encoding="utf-8")).get("tags")
    return make_submission(np.load(needed[0]), out_dir, validation=(np.load(needed[1]), np.load(needed[2])),
                           tags=tags, source=str(run), **kw)
