"""The labelling page's timeline: the current head's scores window by window over one track.

The backbone runs over the track as the page embeds it (:meth:`musetag.tag.label_project.Project.embed_spec`:
the same package, window rule and front end), through a :class:`~musetag.inference.tagger.Tagger` composed
with the embedder's scorer (:func:`musetag.inference.embed.embedding_scorer`) plus a per-window recorder
that keeps each window's vector as it is (:class:`~musetag.inference.segments.WindowRecorder` with the
regression task's identity activation). The mean of those vectors is the track's
embedding; each window's vector goes through the current head, so the timeline shows what the head
would say of a track made of that window alone (as ``musetag tag --segments`` of a backbone + probe
package does, :class:`musetag.inference.probe_tagging.WindowProbeRecorder`). A track's window vectors
are kept (the last :data:`KEEP` tracks), so after a refit only the head is applied again.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from musetag.errors import ConfigError

KEEP = 32  # tracks whose window vectors are kept in memory


@dataclass
class TrackWindows:
    """One track's window vectors ``(n, dim)``, their ``start`` / ``end`` seconds and its duration."""

    vectors: np.ndarray
    start: np.ndarray
    end: np.ndarray
    duration: float


def _with_window_vectors(network):
    from musetag.inference.embed import embedding_scorer
    from musetag.inference.segments import WindowRecorder

    # the identity activation of regression: the windows' vectors are kept as the network gave them
    return replace(embedding_scorer(network), record=partial(WindowRecorder, "regression"))


class WindowEmbedder:
    """The window vectors of the project's tracks (one backbone, loaded on first use; the last
    :data:`KEEP` tracks kept)."""

    def __init__(self, embed_spec: str) -> None:
        from musetag.inference.embed_spec import parse_part, part_windows, split_spec

        parts = split_spec(embed_spec)
        if len(parts) != 1 or parse_part(parts[0])[1]:
            raise ConfigError(f"the timeline needs one backbone without scores, not {embed_spec!r}")
        self.name, self.windows = parse_part(parts[0])[0], part_windows(parts[0])
        self.tagger = None
        self.lock = threading.Lock()
        self.kept: OrderedDict[str, TrackWindows] = OrderedDict()

    def _tagger(self):
        from musetag.inference.embed import embedding_package
        from musetag.inference.loading import load_model
        from musetag.inference.tagger import Tagger

        if self.tagger is None:
            package = embedding_package(load_model(self.name), self.windows)
            self.tagger = Tagger(package, scorer=_with_window_vectors, segments=True)
        return self.tagger

    def windows_of(self, path) -> TrackWindows:
        key = str(path)
        with self.lock:
            if key in self.kept:
                self.kept.move_to_end(key)
                return self.kept[key]
            result = self._tagger().tag(key)
            seg = result.segments
            found = TrackWindows(np.asarray(seg.scores, dtype=np.float32), np.asarray(seg.start),
                                 np.asarray(seg.end), float(result.duration or seg.end.max()))
            self.kept[key] = found
            while len(self.kept) > KEEP:
                self.kept.popitem(last=False)
            return found


def timeline_body(windows: TrackWindows, tags: list[str], window_scores: np.ndarray, track_scores: np.ndarray,
                  task: str = "multilabel") -> dict:
    """The body the page's timeline draws (the shape of ``POST /v1/tag?segments=true``; ``task``
    "regression" draws the values on their own axis)."""
    from musetag.inference.segments import SegmentScores

    return {"tags": list(tags), "task": task, "scores": {t: round(float(s), 6) for t, s in zip(tags, track_scores)},
            "duration": round(windows.duration, 3),
            "segments": SegmentScores(windows.start, windows.end, window_scores).to_list()}
