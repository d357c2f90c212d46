"""The result of tagging one file: :class:`TagResult` (scores, decisions, warnings, windows)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musetag.inference.segments import SegmentScores


@dataclass
class TagResult:
    """Scores of one file (or array). ``status`` is ``"ok"`` or the error message; ``warnings``
    flags scores not to read as a judgement of music (too short, silent, damaged data: see
    :mod:`musetag.inference.checks`); ``segments`` holds the windows' own scores and times when asked for
    (:class:`musetag.inference.segments.SegmentScores`; ``to_row`` then adds ``segments``:
    ``[{"start", "end", "scores": [one per tag, vocabulary order]}]``)."""

    tags: list[str]
    scores_array: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    task: str = "multilabel"
    path: str | None = None
    status: str = "ok"
    duration: float | None = None
    n_segments: int = 0
    _decisions: list[str] | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)
    #: per-window probabilities and times (``Tagger(..., segments=True)``), else None
    segments: SegmentScores | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def scores(self) -> dict[str, float]:
        """Probability per tag, in vocabulary order (empty for a failed file); for a regression package
        the predicted value per target."""
        if self.scores_array is None:
            return {}
        return {tag: float(s) for tag, s in zip(self.tags, self.scores_array)}

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable tags, best first (none for regression: its values are not ranked)."""
        if self.scores_array is None or self.task == "regression":
            return []
        order = np.argsort(-self.scores_array, kind="stable")[: max(0, int(k))]
        return [(self.tags[i], float(self.scores_array[i])) for i in order]

    @property
    def decisions(self) -> list[str]:
        """Tags decided present: strictly above their threshold (multilabel: ``score > threshold``, the
        MediaEval rule the published thresholds were made for) or the arg-max (multiclass)."""
        if self.scores_array is None or self.task == "regression":  # values, not tags: nothing to decide
            return []
        if self.task == "multiclass":
            return [self.tags[int(np.argmax(self.scores_array))]]
        mask = self.scores_array > self.thresholds
        order = np.argsort(-self.scores_array, kind="stable")
        return [self.tags[i] for i in order if mask[i]]

    def to_row(self, top_k: int = 5) -> dict[str, Any]:
        """The row written by ``musetag tag`` (and returned by the HTTP service)."""
        row = {
            "path": self.path or "",
            "status": self.status,
            "duration": None if self.duration is None else round(float(self.duration), 3),
            "top_tags": [{"tag": t, "score": s} for t, s in self.top(top_k)],
            "decisions": self.decisions,
            "warnings": list(self.warnings),
            "scores": self.scores,
        }
        if self.task == "regression":  # its scores are values: readers (plot, page) draw them on a value axis
            row["task"] = "regression"
        if self.segments is not None:
            row["segments"] = self.segments.to_list()
        return row
