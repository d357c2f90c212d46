"""What a Tagger or an Embedder passes windows through: a runner, an aggregation and a per-window head.

A :class:`WindowScorer` is composed once, when the tagger is built, and never changed afterwards:

* ``runner``: a batch of windows ``(n, C, ...)`` -> the network's outputs for them (logits, embeddings,
  or per-backbone ``(embeddings, logits)`` pairs for a backbone + probe package);
* ``accumulate``: a new per-file accumulator (``add(outputs)`` per batch, ``result()`` at the end): the one
  aggregation rule (:class:`musetag.evaluate.aggregation.WindowAggregator`), the mean embedding
  (:class:`MeanVector`) or a probe head;
* ``record``: a new per-window recorder (``add(outputs)``, ``probabilities()``) for per-window scores, or None;
* ``tags``: the names of the result's columns (None: the package's tags; an embedder has none).

:func:`tag_scorer` composes the tagger's (plain packages; backbone + probe packages through
:func:`musetag.inference.probe_tagging.probe_scorer`); :mod:`musetag.inference.embed` composes the embedder's.
:meth:`WindowScorer.score_groups` scores several files' windows in shared batches: the local pool and
the Ray engine both go through it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from musetag.errors import AudioError
from musetag.evaluate.aggregation import WindowAggregator
from musetag.inference.segments import WindowRecorder


class MeanVector:
    """A track's embedding: the mean of its windows' ``forward_features`` vectors, accumulated batch by
    batch (``add``) in float64; ``result()`` is float32."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def add(self, feats: np.ndarray) -> None:
        part = feats.astype(np.float64).sum(0)
        self.total = part if self.total is None else self.total + part
        self.count += len(feats)

    def mean(self, what: str = "embed") -> np.ndarray:
        if self.total is None:
            raise AudioError(f"no segments to {what}")
        return (self.total / self.count).astype(np.float32)

    def result(self) -> np.ndarray:
        return self.mean()


def _concat(parts: list) -> Any:
    """Outputs of consecutive batches joined: arrays, tuples of arrays, lists of ``(array, array | None)``."""
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    joined = [_concat([p[i] for p in parts]) if first[i] is not None else None for i in range(len(first))]
    return tuple(joined) if isinstance(first, tuple) else joined


def _take(outputs: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of outputs shaped as :func:`_concat` joins them."""
    if isinstance(outputs, np.ndarray):
        return outputs[start:stop]
    taken = [None if o is None else _take(o, start, stop) for o in outputs]
    return tuple(taken) if isinstance(outputs, tuple) else taken


@dataclass(frozen=True)
class WindowScorer:
    """A runner, an aggregation and a per-window head, composed (see the module's docstring)."""

    runner: Callable[[np.ndarray], Any]
    accumulate: Callable[[], Any]
    record: Callable[[], Any] | None = None
    tags: list[str] | None = None

    def run(self, windows: np.ndarray, batch_size: int) -> Any:
        """The runner's outputs for ``(n, C, ...)`` windows, in batches of ``batch_size``."""
        return _concat([self.runner(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)])

    def feed(self, acc: Any, windows: np.ndarray, batch_size: int, recorder: Any = None) -> None:
        """Add the outputs of ``windows`` to a file's accumulator (and its recorder: the same outputs)."""
        for i in range(0, len(windows), batch_size):
            out = self.runner(windows[i : i + batch_size])
            acc.add(out)
            if recorder is not None:
                recorder.add(out)

    def new_recorder(self) -> Any:
        return self.record() if self.record is not None else None

    def score(self, windows: np.ndarray, batch_size: int, keep: bool = False) -> tuple[np.ndarray, Any]:
        """A file's result from its windows, and its windows' probabilities when ``keep`` (else None)."""
        acc, rec = self.accumulate(), self.new_recorder() if keep else None
        self.feed(acc, windows, batch_size, rec)
        return acc.result(), None if rec is None else rec.probabilities()

    def score_groups(self, groups: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
        """The results of several files, ``groups[i]`` the windows of file ``i``: all windows run through
        the network together in batches of ``batch_size`` (a batch may span files), then each file's outputs
        are aggregated alone."""
        if not groups:
            return []
        outputs = self.run(np.concatenate(groups, axis=0), batch_size)
        results, pos = [], 0
        for windows in groups:
            acc = self.accumulate()
            acc.add(_take(outputs, pos, pos + len(windows)))
            pos += len(windows)
            results.append(acc.result())
        return results


def plain_scorer(runner: Callable, aggregation: str, task: str) -> WindowScorer:
    """The scorer of a plain package: its aggregation rule over the network's logits, per-window probabilities."""
    return WindowScorer(runner, lambda: WindowAggregator(aggregation, task), lambda: WindowRecorder(task))
