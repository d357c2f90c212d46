"""Windows of a file and their scores: where the tagger cuts, what each window scored, how the
windows make the file's score.

:func:`audio_chunk_starts` and :class:`_Segmenter` place the windows (with
:func:`musetag.training.data.segment_starts`, shared with training's evaluation);
:func:`window_times` turns window starts into seconds; :class:`_Aggregator` turns the network
outputs of a file's windows into its scores by the package's rule (``mean`` of probabilities,
``mean_logits``, ``max``); :class:`SegmentScores` keeps the per-window probabilities and their
times (``Tagger(..., segments=True)``, ``musetag tag --segments``, ``POST /v1/tag?segments=true``)
and :func:`aggregate_windows` recomputes the file score from them by the same rule.

The per-window scores come from the same forward pass as the file's scores (no second decode):
the aggregator and the recorder are fed the same network outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from musetag.errors import AudioError, ModelError

AGGREGATIONS = ("mean", "mean_logits", "max")


# ---------------------------------------------------------------------------------------------
# where the windows are
# ---------------------------------------------------------------------------------------------
AUDIO_RULES = ("evenly_spaced", "centre_excerpt")


def audio_chunk_starts(n: int, length: int, rule: str, count: int = 0) -> list[int]:
    """Start samples of the chunks an audio-domain rule cuts from ``n`` samples.

    ``evenly_spaced``: ``count`` chunks, chunk ``i`` at ``i * ((n - length) // count)`` (Won et
    al. 2020's evaluation; ``count`` 0: ``ceil(n / length)`` chunks from the start to the end,
    ``hop = (n - length) // (chunks - 1)``). ``centre_excerpt``: one chunk at ``(n - length) // 2``.
    ``n < length``: one chunk at 0 (zero-padded by the caller)."""
    if n < length:
        return [0]
    if rule == "centre_excerpt":
        return [(n - length) // 2]
    if rule != "evenly_spaced":
        raise ModelError(f"unknown audio segment rule {rule!r}; use one of {', '.join(AUDIO_RULES)}")
    if count > 0:
        hop = (n - length) // count
        return [i * hop for i in range(count)]
    chunks = -(-n // length)
    if chunks <= 1:
        return [0]
    hop = (n - length) // (chunks - 1)
    return [i * hop for i in range(chunks)]


def _window(x: np.ndarray, start: int, length: int) -> np.ndarray:
    seg = x[..., start : start + length]
    if seg.shape[-1] < length:
        pad = [(0, 0)] * (seg.ndim - 1) + [(0, length - seg.shape[-1])]
        seg = np.pad(seg, pad)
    return seg


class _Segmenter:
    """Cuts windows from frames arriving in consecutive chunks; ``finish`` adds the padded tail."""

    def __init__(self, length: int, hop: int, keep: set[int] | None = None) -> None:
        self.length, self.hop, self.keep = length, hop, keep
        self.pending: np.ndarray | None = None
        self.p0 = 0  # absolute index of pending[..., 0]
        self.next = 0  # absolute start of the next window
        self.index = 0  # windows cut so far
        self.total = 0  # frames seen
        self.starts: list[int] = []  # start frame of every window emitted

    def _emit(self, seg: np.ndarray, out: list, start: int) -> None:
        if self.keep is None or self.index in self.keep:
            out.append(np.ascontiguousarray(seg))
            self.starts.append(int(start))
        self.index += 1

    def feed(self, chunk: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        self.total += chunk.shape[-1]
        self.pending = chunk if self.pending is None else np.concatenate([self.pending, chunk], axis=-1)
        while self.next + self.length <= self.p0 + self.pending.shape[-1]:
            a = self.next - self.p0
            self._emit(self.pending[..., a : a + self.length], out, self.next)
            self.next += self.hop
        drop = min(self.next - self.p0, self.pending.shape[-1])
        if drop > 0:
            self.pending = self.pending[..., drop:]
            self.p0 += drop
        return out

    def finish(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        n = self.total
        if self.pending is None:
            return out
        if self.index == 0:
            self._emit(_window(self.pending, 0, self.length), out, 0)
        else:
            last = self.next - self.hop
            if self.next < n and last + self.length < n:
                self._emit(_window(self.pending, self.next - self.p0, self.length), out, self.next)
        return out


def window_times(starts, length: int, unit_seconds: float, duration: float) -> np.ndarray:
    """``(n, 2)`` start and end seconds of windows starting at ``starts`` (in frames or samples,
    ``unit_seconds`` each) and ``length`` units long, clipped to ``duration``. ``length`` 0 (the
    whole file at once): one window ``[0, duration]``. A frame ``t`` stands for the audio from
    ``t * hop`` to ``(t + 1) * hop``, so windows every ``hop`` frames of ``length >= hop`` frames
    leave no gap."""
    duration = float(duration)
    if not length:
        return np.array([[0.0, duration]] * max(1, len(starts)), dtype=np.float64)
    s = np.asarray(starts, dtype=np.float64) * float(unit_seconds)
    e = s + float(length) * float(unit_seconds)
    return np.stack([np.minimum(s, duration), np.minimum(e, duration)], axis=1)


# ---------------------------------------------------------------------------------------------
# scores of windows -> the file's score
# ---------------------------------------------------------------------------------------------
def _activation(logits: np.ndarray, task: str) -> np.ndarray:
    logits = logits.astype(np.float64)
    if task == "regression":  # the values themselves
        return logits
    if task == "multiclass":
        z = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-logits))


class _Aggregator:
    def __init__(self, how: str, task: str) -> None:
        if how not in AGGREGATIONS:
            raise ModelError(f"unknown segment aggregation {how!r}; use {', '.join(AGGREGATIONS)}")
        self.how, self.task = how, task
        self.acc: np.ndarray | None = None
        self.count = 0

    def add(self, logits: np.ndarray) -> None:
        values = logits.astype(np.float64) if self.how == "mean_logits" else _activation(logits, self.task)
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
            out = _activation(self.acc / self.count, self.task)
        else:
            out = self.acc / self.count
        return out.astype(np.float32)


def aggregate_windows(probabilities: np.ndarray, how: str, task: str = "multilabel") -> np.ndarray:
    """The file score from its windows' probabilities ``(n, tags)``, by the package's rule:
    ``mean`` (of probabilities), ``max``, or ``mean_logits`` (the activation of the mean logit;
    the logits are recovered from the probabilities: ``log(p / (1 - p))`` for multilabel,
    ``log p`` for multiclass, which softmax reads the same as the logits)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if how == "mean":
        return p.mean(axis=0)
    if how == "max":
        return p.max(axis=0)
    if how != "mean_logits":
        raise ModelError(f"unknown segment aggregation {how!r}; use {', '.join(AGGREGATIONS)}")
    if task == "regression":  # values: the mean is the mean of the logits
        return p.mean(axis=0)
    eps = 1e-12
    p = np.clip(p, eps, 1.0 - eps) if task != "multiclass" else np.clip(p, eps, 1.0)
    logits = np.log(p) if task == "multiclass" else np.log(p) - np.log1p(-p)
    return _activation(logits.mean(axis=0), task)


@dataclass
class SegmentScores:
    """Per-window probabilities of one file: ``start`` / ``end`` (seconds, ``(n,)``) and
    ``scores`` ``(n, tags)`` in the vocabulary order."""

    start: np.ndarray
    end: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(len(self.start))

    def to_list(self, digits: int = 6) -> list[dict[str, Any]]:
        """``[{"start", "end", "scores": [per tag]}]``: the ``segments`` of a result row."""
        return [
            {"start": round(float(s), 3), "end": round(float(e), 3), "scores": [round(float(v), digits) for v in row]}
            for s, e, row in zip(self.start, self.end, self.scores)
        ]

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> "SegmentScores":
        """The inverse of :meth:`to_list` (a result row read back)."""
        return cls(
            start=np.array([float(r["start"]) for r in rows], dtype=np.float64),
            end=np.array([float(r["end"]) for r in rows], dtype=np.float64),
            scores=np.array([list(r["scores"]) for r in rows], dtype=np.float64).reshape(len(rows), -1),
        )


class WindowRecorder:
    """Collects the probabilities of every window fed to the network (``add(logits)`` per batch)."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.parts: list[np.ndarray] = []

    def add(self, logits: np.ndarray) -> None:
        self.parts.append(_activation(logits, self.task))

    def probabilities(self) -> np.ndarray:
        return np.concatenate(self.parts, axis=0) if self.parts else np.zeros((0, 0))
