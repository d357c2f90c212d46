"""One labelling session: the project's tracks, labels, head and proposals (``musetag label``).

:class:`LabelSession` joins the project (:mod:`musetag.tag.label_project`), its labels file
(:mod:`musetag.tag.label_store`) and the learning loop (:mod:`musetag.training.active`): after each
label the head is refit on every labelled, embedded track and every embedded track is rescored.
It is used by the page's server (:mod:`musetag.serve.label_app`) and directly from Python (the tests
and the labelling bench). Thread-safe: one lock around the labels and the model.
"""
from __future__ import annotations

import csv
import os
import threading
from pathlib import Path

import numpy as np

from musetag.errors import ConfigError, DatasetError, shortlist
from musetag.tag.label_project import EmbeddingJob, Project, scan
from musetag.tag.label_store import TAG_SEP, LabelStore
from musetag.training.active import DEFAULT_RULE, Proposer, fit_head, standardise, uncertainty

VALUE_RANGE = (0.0, 1.0)  # a regression slider's range (Emotify's agreement fractions, normalised valence/arousal)


def format_values(values, targets) -> tuple[str, ...]:
    """A regression label as stored in labels.csv: ``("valence=0.4", "arousal=0.75")`` in target order;
    every target needs a finite number in :data:`VALUE_RANGE`."""
    if not isinstance(values, dict):
        raise ConfigError(f"a regression label needs a value per target {list(targets)}, e.g. "
                          f"{{{', '.join(repr(t) + ': 0.5' for t in targets)}}}")
    unknown = [k for k in values if k not in targets]
    missing = [t for t in targets if t not in values]
    if unknown or missing:
        raise ConfigError(f"a regression label needs exactly the targets {list(targets)}: "
                          + (f"unknown {unknown}" if unknown else f"missing {missing}"))
    out = []
    for t in targets:
        try:
            v = float(values[t])
        except (TypeError, ValueError):
            raise ConfigError(f"target {t!r}: {values[t]!r} is not a number") from None
        if not (VALUE_RANGE[0] <= v <= VALUE_RANGE[1]):
            raise ConfigError(f"target {t!r}: {v} is outside {VALUE_RANGE[0]}..{VALUE_RANGE[1]}")
        out.append(f"{t}={v:.6g}")
    return tuple(out)


def parse_values(tags, targets) -> tuple[float, ...]:
    """The values of a stored regression label (:func:`format_values`), in target order."""
    found = dict(t.split("=", 1) for t in tags if "=" in t)
    try:
        return tuple(float(found[t]) for t in targets)
    except (KeyError, ValueError):
        raise DatasetError(f"the regression label {';'.join(tags)!r} does not give a number for every target "
                           f"{list(targets)}; label the track again") from None


class LabelSession:
    def __init__(self, project: Project, job: EmbeddingJob | None = None, seed: int = 0) -> None:
        self.project = project
        self.tags = list(project.tags)
        self.paths = job.paths if job is not None else scan(project)
        self.path_set = set(self.paths)
        self.job = job if job is not None else EmbeddingJob(project, self.paths)
        self.store = LabelStore(project.labels_path)
        self.lock = threading.RLock()
        self.seed = seed
        self._index: list[str] = []  # embedded paths, in folder order, rows of X
        self._X = np.zeros((0, 0), dtype=np.float32)
        self._mean = self._std = None  # of the embedded tracks: how X was standardised
        self._windows = None  # the timeline's WindowEmbedder, made on first use
        self._rows: dict[str, int] = {}
        self._head = None
        self._proposer: Proposer | None = None
        self.probs = np.zeros((0, len(self.tags)), dtype=np.float32)
        self.recent: dict[str, list[str]] = {}  # annotator -> last labelled paths
        self.refits = 0
        self.fitted_on = 0  # labelled tracks the head was fitted on

    # -- tracks and model ---------------------------------------------------------------------------------
    def _sync_tracks(self) -> bool:
        """Take in newly embedded tracks (X standardised again); True when the set changed."""
        with self.job.lock:
            ready = [p for p in self.paths if p in self.job.vectors]
            if len(ready) == len(self._index):
                return False
            X = np.stack([self.job.vectors[p] for p in ready]) if ready else np.zeros((0, 0), np.float32)
        if len(ready):
            std = X.std(axis=0)
            self._mean, self._std = X.mean(axis=0), np.where(std > 0, std, 1.0)
        self._index, self._X = ready, standardise(X) if len(ready) else X
        self._rows = {p: i for i, p in enumerate(ready)}
        self._proposer = Proposer(self._X, seed=self.seed) if len(ready) else None
        self._head = None  # new tracks: X is standardised again, so no warm start
        return True

    def labels(self) -> dict[str, tuple[str, ...]]:
        return self.store.state()

    def targets(self, labels: dict[str, tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray]:
        """``(rows of X, Y)`` of the labelled, embedded tracks (labels of unknown tags are ignored;
        regression: the targets' values)."""
        rows, Y = [], []
        col = {t: j for j, t in enumerate(self.tags)}
        for path, tags in labels.items():
            if path in self._rows and self.project.task == "regression":
                rows.append(self._rows[path])
                Y.append(np.asarray(parse_values(tags, self.tags), dtype=np.float32))
            elif path in self._rows:
                y = np.zeros(len(self.tags), dtype=np.float32)
                y[[col[t] for t in tags if t in col]] = 1.0
                rows.append(self._rows[path])
                Y.append(y)
        return np.asarray(rows, dtype=int), np.asarray(Y, dtype=np.float32).reshape(-1, len(self.tags))

    def refit(self) -> dict[str, tuple[str, ...]]:
        """Refit the head on every label and rescore every embedded track; returns the labels."""
        with self.lock:
            self._sync_tracks()
            labels = self.labels()
            if not self._index:
                self.probs, self.fitted_on = np.zeros((0, len(self.tags)), dtype=np.float32), 0
                return labels
            rows, Y = self.targets(labels)
            head = fit_head(self._X[rows], Y, self.project.task, previous=self._head)
            self._head, self.fitted_on = head, len(rows)
            self.probs = head.predict(self._X).astype(np.float32)
            self._proposer.set_labelled(rows)
            self.refits += 1
            return labels

    def counts(self, labels) -> dict[str, int]:
        """Positive labels per tag (regression: labels per target)."""
        if self.project.task == "regression":
            return {t: len(labels) for t in self.tags}
        positives = {t: 0 for t in self.tags}
        for tags in labels.values():
            for t in tags:
                if t in positives:
                    positives[t] += 1
        return positives

    # -- actions -----------------------------------------------------------------------------------------
    def check_label(self, path: str, tags, values=None) -> tuple[str, ...]:
        """The label to store: ``tags`` checked, or a regression project's ``values`` formatted."""
        if path not in self.path_set:
            raise DatasetError(f"{shown_path(path)} is not a track of this project ({self.project.folder})")
        failure = self.job.failures.get(path)
        if failure is not None:  # a label nobody can train on: prepare/train would stop on the file
            raise DatasetError(f"{path!r} could not be read ({failure}), so it cannot be labelled; fix or replace the "
                               "file, then restart `musetag label` to read it again")
        tags = tuple(tags)
        if self.project.task == "regression":
            if tags:
                raise ConfigError(f"this project is a regression over {self.tags}: give values, not tags {list(tags)}")
            return format_values(values, self.tags)
        if values:
            raise ConfigError(f"values {values} are for a regression project; this one is {self.project.task}")
        unknown = [t for t in tags if t not in self.tags]
        if unknown:
            raise ConfigError(f"unknown tag(s) {_few(unknown)}; the project's tags are {_few(self.tags)}")
        if len(set(tags)) != len(tags):
            from collections import Counter

            twice = sorted(t for t, n in Counter(tags).items() if n > 1)
            raise ConfigError(f"a tag is given twice ({_few(twice)}); give each at most once")
        if self.project.task == "multiclass" and len(tags) > 1:
            raise ConfigError(f"this project is multiclass: give one tag (or none), not {_few(tags)}")
        return tags

    def label(self, path: str, tags, annotator: str = "", values=None) -> tuple[str, ...]:
        tags = self.check_label(path, tags, values)
        self.store.label(path, tags, annotator)  # on disk (fsynced) before anything else
        with self.lock:
            recent = self.recent.setdefault(annotator, [])
            recent.append(path)
            del recent[:-10]
            self.refit()
        return tags

    def undo(self, annotator: str = "") -> str | None:
        event = self.store.undo(annotator)
        with self.lock:
            if event is not None and self.recent.get(annotator) and self.recent[annotator][-1] == event.path:
                self.recent[annotator].pop()
            self.refit()
        return event.path if event is not None else None

    def propose(self, rule: str = "active", annotator: str = "", exclude=()) -> str | None:
        with self.lock:
            if self._sync_tracks() or self._proposer is None or len(self.probs) != len(self._index):
                self.refit()
            if self._proposer is None:
                return None
            labels = self.labels()
            pos = list(self.counts(labels).values())
            recent = [self._rows[p] for p in self.recent.get(annotator, []) if p in self._rows]
            skip = [self._rows[p] for p in exclude if p in self._rows]
            i = self._proposer.propose(rule, probs=self.probs, positives=pos, task=self.project.task,
                                       recent=recent, exclude=skip)
            return None if i is None else self._index[i]

    # -- views -------------------------------------------------------------------------------------------
    def predictions(self, path: str) -> list[dict]:
        with self.lock:
            i = self._rows.get(path) if self._index else None
            if i is None or i >= len(self.probs):
                return []
            if self._no_prediction():  # the page's sliders would start at 0 (their bottom), not mid-range
                return []
            return [{"tag": t, "score": round(float(s), 4)} for t, s in zip(self.tags, self.probs[i])]

    def _no_prediction(self) -> bool:
        """A regression project before its first rating: its ridge head predicts 0 for every target, which is not a
        prediction (views show none rather than zeros)."""
        return self.project.task == "regression" and not self.fitted_on

    def timeline(self, path: str) -> dict:
        """The current head's scores window by window over ``path`` (:mod:`musetag.tag.label_timeline`),
        with the track's own scores: the body the page's timeline draws."""
        from musetag.tag.label_timeline import WindowEmbedder, timeline_body

        if path not in self.path_set:
            raise DatasetError(f"{shown_path(path)} is not a track of this project ({self.project.folder})")
        with self.lock:
            if self._no_prediction():  # before the backbone runs over the track for nothing
                raise DatasetError("no track is rated yet: the timeline shows the model's values once one is")
        if self._windows is None:
            self._windows = WindowEmbedder(self.project.embed_spec())
        windows = self._windows.windows_of(self.project.folder / path)  # the backbone, outside the session lock
        with self.lock:
            if self._sync_tracks() or self._head is None or len(self.probs) != len(self._index):
                self.refit()
            if self._head is None:
                raise DatasetError("no track is embedded yet: the timeline needs the embeddings' statistics")
            head, mean, std, row = self._head, self._mean, self._std, self._rows.get(path)
            track = self.probs[row] if row is not None else None
        per_window = head.predict((windows.vectors - mean) / std)
        if track is None:
            track = head.predict(((windows.vectors.mean(axis=0) - mean) / std)[None])[0]
        return timeline_body(windows, self.tags, per_window, track, self.project.task)

    def review(self, tag: str, limit: int = 200) -> list[dict]:
        """Tracks sorted by the predicted score of ``tag`` (highest first) with their current label."""
        if tag not in self.tags:
            raise ConfigError(f"unknown tag {tag!r}; the project's tags are {self.tags}")
        with self.lock:
            if self._sync_tracks() or len(self.probs) != len(self._index):
                self.refit()
            if self._no_prediction():
                return []
            j = self.tags.index(tag)
            order = np.argsort(-self.probs[:, j], kind="stable")[:limit] if len(self.probs) else []
            labels = self.labels()
            return [{"path": self._index[i], "score": round(float(self.probs[i, j]), 4),
                     "label": list(labels[self._index[i]]) if self._index[i] in labels else None} for i in order]

    def similar(self, path: str, k: int = 10) -> list[dict]:
        """"More like this": the ``k`` embedded tracks nearest ``path`` (cosine on the standardised
        embeddings the head sees), with their current label."""
        with self.lock:
            self._sync_tracks()
            if path not in self._rows:
                raise DatasetError(f"{shown_path(path)} is not an embedded track of this project")
            X = self._X / np.maximum(np.linalg.norm(self._X, axis=1, keepdims=True), 1e-12)
            sims = X @ X[self._rows[path]]
            sims[self._rows[path]] = -np.inf
            order = np.argsort(-sims, kind="stable")[:k]
            labels = self.labels()
            return [{"path": self._index[i], "similarity": round(float(sims[i]), 4),
                     "label": list(labels[self._index[i]]) if self._index[i] in labels else None} for i in order]

    def summary(self) -> dict:
        labels = self.labels()
        with self.lock:
            u = uncertainty(self.probs, self.project.task) if len(self.probs) else np.zeros(0)
        regression = self.project.task == "regression"
        return {"tags": self.tags, "task": self.project.task, "backbone": self.project.backbone,
                "default_rule": DEFAULT_RULE, "value_range": list(VALUE_RANGE) if regression else None,
                "labelled": sum(1 for p in labels if p in self.path_set), "positives": self.counts(labels),
                "progress": self.job.progress(), "failures": [{"path": p, "error": e}
                                                              for p, e in sorted(self.job.failures.items())],
                "mean_uncertainty": round(float(u.mean()), 4) if len(u) and not regression else None,
                "refits": self.refits}


def import_labels(session: LabelSession, csv_path: str | os.PathLike, annotator: str | None = None) -> int:
    """Append the labels of ``csv_path`` (columns ``path`` and ``tags``, tags ``;``-separated, or ``path`` and
    one tag column; regression: ``path`` and a column per target) that differ from the project's current ones; paths absolute or relative to the CSV's
    folder or to the project folder. Returns the number of labels appended."""
    csv_path = Path(csv_path)
    try:
        with open(csv_path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
            fields = list(rows[0].keys()) if rows else []
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"--labels {csv_path}: cannot read it ({exc})") from exc
    regression = session.project.task == "regression"
    if regression and ("path" not in fields or not set(session.tags) <= set(fields)):
        raise DatasetError(f"--labels {csv_path}: expected a header with 'path' and the targets {session.tags}, "
                           f"found {fields}")
    if "path" not in fields or len(fields) < 2:
        raise DatasetError(f"--labels {csv_path}: expected a header with 'path' and 'tags' (or one tag column), "
                           f"found {fields}")
    column = "tags" if "tags" in fields else [f for f in fields if f != "path"][0]
    known, current = set(session.paths), session.labels()
    added = 0
    for n, row in enumerate(rows, start=2):
        rel = _project_path(session.project, csv_path, row["path"])
        if rel not in known:
            raise DatasetError(f"--labels {csv_path}:{n}: {row['path']} is not an audio file of {session.project.folder}")
        tags = () if regression else tuple(t.strip() for t in (row[column] or "").split(TAG_SEP) if t.strip())
        try:
            tags = session.check_label(rel, tags, {t: row[t] for t in session.tags} if regression else None)
        except ConfigError as exc:
            raise ConfigError(f"--labels {csv_path}:{n}: {exc}") from exc
        if current.get(rel) != tags:
            session.store.label(rel, tags, annotator or f"import:{csv_path.name}")
            added += 1
    return added


def _project_path(project: Project, csv_path: Path, value: str) -> str:
    p = Path(value)
    for candidate in ([p] if p.is_absolute() else [csv_path.parent / p, project.folder / p]):
        if candidate.exists():
            return os.path.relpath(candidate.resolve(), project.folder)
    return value


def shown_path(path: str, most: int = 200) -> str:
    """``path`` quoted for a message, its first ``most`` characters at most (a request may send megabytes)."""
    if len(path) <= most:
        return repr(path)
    return f"{path[:most]!r}... ({len(path)} characters)"


def _few(items) -> str:
    """``items`` quoted for a message, ten at most (a request may send thousands)."""
    return shortlist([repr(t)[:80] for t in items])
