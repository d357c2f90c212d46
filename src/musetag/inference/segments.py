"""Windows of a file and their scores: where the tagger cuts, what each window scored, how the
windows make the file's score.

:func:`segment_starts` is the one window rule (training's evaluation imports it);
:func:`audio_chunk_starts` and :class:`_Segmenter` place the windows; :func:`window_times` turns
window starts into seconds; :class:`SegmentScores` keeps the per-window probabilities and their
times (``Tagger(..., segments=True)``, ``musetag tag --segments``, ``POST /v1/tag?segments=true``).
The windows' outputs become the file's score by the one aggregation rule,
:mod:`musetag.evaluate.aggregation` (``WindowAggregator``; ``aggregate_windows`` recomputes the file
score from the per-window probabilities).

The per-window scores come from the same forward pass as the file's scores (no second decode):
the aggregator and the recorder are fed the same network outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from musetag.errors import ModelError
from musetag.evaluate.aggregation import activation

# ---------------------------------------------------------------------------------------------
# where the windows are
# ---------------------------------------------------------------------------------------------
AUDIO_RULES = ("evenly_spaced", "centre_excerpt")


def audio_chunk_starts(n: int, length: int, rule: str, count: int = 0, max_overlap: float | None = None) -> list[int]:
    """Start samples of the chunks an audio-domain rule cuts from ``n`` samples.

    ``evenly_spaced``: ``count`` chunks, chunk ``i`` at ``i * ((n - length) // count)`` (Won et
    al. 2020's evaluation; ``count`` 0: ``ceil(n / length)`` chunks from the start to the end,
    ``hop = (n - length) // (chunks - 1)``). ``centre_excerpt``: one chunk at ``(n - length) // 2``.
    ``n < length``: one chunk at 0 (zero-padded by the caller). ``max_overlap`` (a fraction of
    ``length``, the embeddings' rule): when two of those chunks would overlap by more, the file gets
    instead as many chunks as keep every overlap within it (never more than the rule's), spread from
    the start to the end (:func:`fit_chunk_starts`)."""
    if n < length:
        return [0]
    if rule == "centre_excerpt":
        return [(n - length) // 2]
    if rule != "evenly_spaced":
        raise ModelError(f"unknown audio segment rule {rule!r}; use one of {', '.join(AUDIO_RULES)}")
    if count > 0:
        hop = (n - length) // count
        starts = [i * hop for i in range(count)]
    else:
        chunks = -(-n // length)
        hop = (n - length) // (chunks - 1) if chunks > 1 else 0
        starts = [i * hop for i in range(chunks)] if chunks > 1 else [0]
    if max_overlap is not None and len(starts) > 1 and hop < min_hop(length, max_overlap):
        return fit_chunk_starts(n, length, max_overlap, len(starts))
    return starts


def min_hop(length: int, max_overlap: float) -> int:
    """The smallest hop between windows of ``length`` that overlap by at most ``max_overlap`` of it."""
    return max(1, length - int(length * float(max_overlap)))


def fit_chunk_starts(n: int, length: int, max_overlap: float, most: int) -> list[int]:
    """As many chunks of ``length`` in ``n >= length`` samples as keep consecutive ones overlapping by at
    most ``max_overlap`` of their length (at most ``most``), the first at 0 and the last ending at ``n``."""
    chunks = min(most, 1 + (n - length) // min_hop(length, max_overlap))
    if chunks <= 1:
        return [0]
    return [i * (n - length) // (chunks - 1) for i in range(chunks)]


def segment_starts(n: int, length: int, hop: int, max_segments: int = 0) -> list[int]:
    """Window starts over ``n`` frames: every ``hop``, plus one zero-padded window covering the tail
    when the regular ones miss it; ``max_segments`` > 0 keeps that many, evenly spaced. The one
    window rule: training's evaluation and the tagger both cut here, so tagging sees what validation saw."""
    if n <= length:
        starts = [0]
    else:
        starts = list(range(0, n - length + 1, hop))
        last = starts[-1]
        if last + hop < n and last + length < n:
            starts.append(last + hop)
    if max_segments and len(starts) > max_segments:
        pick = np.unique(np.round(np.linspace(0, len(starts) - 1, max_segments)).astype(int))
        starts = [starts[i] for i in pick]
    return starts


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


class WindowRecorder:
    """Collects the probabilities of every window fed to the network (``add(logits)`` per batch)."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.parts: list[np.ndarray] = []

    def add(self, logits: np.ndarray) -> None:
        self.parts.append(activation(logits, self.task))

    def probabilities(self) -> np.ndarray:
        return np.concatenate(self.parts, axis=0) if self.parts else np.zeros((0, 0))
