"""The labels of a labelling project (``musetag label``): ``PROJECT_DIR/labels.csv``, append-only.

One line per event, columns ``path,tags,time,annotator,action``:

- ``action = label``: ``tags`` (``;``-joined names) is the track's label; an empty ``tags`` means
  "none of these tags" (a negative for every tag). An edit is simply a newer ``label`` line.
- ``action = undo``: revokes the newest not-yet-revoked ``label`` line of that annotator (its ``path``
  names the track it revokes); the track falls back to its previous label, or to unlabelled.

So the latest surviving line of a track wins, nothing is ever rewritten, and replaying the file gives
the same state after a restart. Each append takes an exclusive ``flock`` on the file (two server
processes or two tabs lose nothing), writes one whole line and ``fsync``\\ s it before returning, so a
killed server loses at most the request in flight.
"""
from __future__ import annotations

import csv
import fcntl
import io
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from musetag.errors import DatasetError

log = logging.getLogger(__name__)
FIELDS = ("path", "tags", "time", "annotator", "action")
TAG_SEP = ";"
ACTIONS = ("label", "undo")


@dataclass(frozen=True)
class LabelEvent:
    path: str
    tags: tuple[str, ...]
    time: str
    annotator: str
    action: str


def _write_line(handle, data: bytes) -> None:
    """Append ``data`` (one CSV line) to the locked ``handle`` and fsync it; after a writer killed mid-line
    the torn line is closed first, so it never swallows this one."""
    size = handle.seek(0, os.SEEK_END)
    if size:
        with open(handle.name, "rb") as reader:
            reader.seek(size - 1)
            if reader.read(1) != b"\n":
                data = b"\n" + data
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


MAX_ANNOTATOR = 100  # characters of an annotator's name


def check_annotator(annotator: str) -> None:
    """A name one can read in labels.csv: at most :data:`MAX_ANNOTATOR` printable characters that UTF-8 can
    write (a lone surrogate from a JSON ``\\ud800`` cannot be), else :class:`ConfigError` (400 on the page)."""
    from musetag.errors import ConfigError

    if not isinstance(annotator, str):
        raise ConfigError(f"annotator must be text, not {type(annotator).__name__}")
    if len(annotator) > MAX_ANNOTATOR:
        raise ConfigError(f"the annotator's name has {len(annotator)} characters; give at most {MAX_ANNOTATOR}")
    bad = next((c for c in annotator if not c.isprintable()), None)
    try:
        annotator.encode("utf-8")
    except UnicodeEncodeError:
        bad = bad or "a lone surrogate"
    if bad is not None:
        raise ConfigError(f"the annotator's name holds {bad!r}, which is not a printable character; use letters, "
                          "digits, spaces and punctuation")


class LabelStore:
    """``labels.csv`` of a project: :meth:`append` (locked, fsynced) and :meth:`state` (replayed)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8", newline="") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                if handle.tell() == 0:
                    handle.write(",".join(FIELDS) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
            _fsync_dir(self.path.parent)

    def label(self, path: str, tags, annotator: str = "") -> LabelEvent:
        """Append a label of ``path`` (``tags``: the tags that apply; empty: none of them). The same label again
        as this annotator's newest one (a key pressed twice) appends nothing, so one undo revokes it."""
        check_annotator(annotator)
        event = LabelEvent(str(path), tuple(tags), time.strftime("%Y-%m-%dT%H:%M:%S%z"), annotator or "", "label")
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [event.path, TAG_SEP.join(event.tags), event.time, event.annotator, event.action])
        with self._lock, open(self.path, "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # other processes; released when the file closes
            stack = _replay(self.events())[1].get(annotator or "", [])
            if stack and stack[-1].path == event.path and stack[-1].tags == event.tags:
                return stack[-1]
            _write_line(handle, buf.getvalue().encode("utf-8"))
        return event

    def undo(self, annotator: str = "") -> LabelEvent | None:
        """Revoke ``annotator``'s newest surviving label (None: nothing to undo). Checked and written
        under the file lock, so two tabs undoing at once revoke two different labels."""
        check_annotator(annotator)
        with self._lock, open(self.path, "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            stack = _replay(self.events())[1].get(annotator or "", [])
            if not stack:
                return None
            target = stack[-1]
            buf = io.StringIO()
            event = LabelEvent(target.path, (), time.strftime("%Y-%m-%dT%H:%M:%S%z"), annotator or "", "undo")
            csv.writer(buf, lineterminator="\n").writerow([event.path, "", event.time, event.annotator, "undo"])
            _write_line(handle, buf.getvalue().encode("utf-8"))
        return event

    def events(self) -> list[LabelEvent]:
        """Every line of the file, in order. A torn line (a writer killed mid-line) is skipped with a
        warning naming it; a file that is not a labels file is refused."""
        text = self.path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or tuple(rows[0]) != FIELDS:
            raise DatasetError(f"{self.path}: not a labels file (expected the header {','.join(FIELDS)}); "
                               "point --out at a new folder or at an existing labelling project")
        out = []
        for n, row in enumerate(rows[1:], start=2):
            if len(row) != len(FIELDS) or row[4] not in ACTIONS:
                log.warning("%s:%d: skipped a malformed line %r (a writer killed mid-line, or an edit); expected "
                            "%s with action one of %s", self.path, n, row, ",".join(FIELDS), ACTIONS)
                continue
            tags = tuple(t for t in row[1].split(TAG_SEP) if t)
            out.append(LabelEvent(row[0], tags, row[2], row[3], row[4]))
        return out

    def state(self) -> dict[str, tuple[str, ...]]:
        """The label of every labelled track (path -> its tags; ``()``: none of the tags)."""
        return _replay(self.events())[0]


def _replay(events: list[LabelEvent]) -> tuple[dict[str, tuple[str, ...]], dict[str, list[LabelEvent]]]:
    """``(labels, per-annotator stacks of surviving label events)`` after ``events``."""
    per_track: dict[str, list[LabelEvent]] = {}
    stacks: dict[str, list[LabelEvent]] = {}
    for e in events:
        if e.action == "label":
            per_track.setdefault(e.path, []).append(e)
            stacks.setdefault(e.annotator, []).append(e)
        else:
            stack = stacks.get(e.annotator, [])
            if stack and stack[-1].path == e.path:
                revoked = stack.pop()
                history = per_track.get(e.path, [])
                if revoked in history:
                    history.reverse()
                    history.remove(revoked)  # the newest equal event
                    history.reverse()
    return {p: h[-1].tags for p, h in per_track.items() if h}, stacks
