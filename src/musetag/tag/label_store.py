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

A :class:`LabelStore` keeps what it has replayed and reads only the bytes appended since (by itself or by
another process), so a click costs the same with 50 labels or 50,000. A file that was replaced, cut short,
modified without growing, or changed in the last 256 bytes read is replayed again from its start (an edit
further back made together with new lines is seen at the next start; the file is not meant to be edited).
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
    the torn line is closed first (its open quote too: ``"Artist, The - So``), so it never swallows this one."""
    size = handle.seek(0, os.SEEK_END)
    if size:
        with open(handle.name, "rb") as reader:
            reader.seek(size - 1)
            if reader.read(1) != b"\n":  # torn: read back to its start (one line is far shorter than 1 MiB)
                reader.seek(max(0, size - (1 << 20)))
                tail = reader.read()
                torn = tail[tail.rfind(b"\n") + 1:]
                data = (b'"\n' if torn.count(b'"') % 2 else b"\n") + data
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
        self._lock = threading.Lock()  # appends of this process (the flock orders processes)
        self._read_lock = threading.Lock()  # the replayed state below
        self._read = _Read()
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
            newest = self._newest(annotator or "", current=True)
            if newest is not None and newest.path == event.path and newest.tags == event.tags:
                return newest
            _write_line(handle, buf.getvalue().encode("utf-8"))
        return event

    def undo(self, annotator: str = "") -> LabelEvent | None:
        """Revoke ``annotator``'s newest surviving label (None: nothing to undo). Checked and written
        under the file lock, so two tabs undoing at once revoke two different labels."""
        check_annotator(annotator)
        with self._lock, open(self.path, "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            target = self._newest(annotator or "")
            if target is None:
                return None
            buf = io.StringIO()
            event = LabelEvent(target.path, (), time.strftime("%Y-%m-%dT%H:%M:%S%z"), annotator or "", "undo")
            csv.writer(buf, lineterminator="\n").writerow([event.path, "", event.time, event.annotator, "undo"])
            _write_line(handle, buf.getvalue().encode("utf-8"))
        return event

    def events(self) -> list[LabelEvent]:
        """Every line of the file, in order. A torn line (a writer killed mid-line) is skipped with a
        warning naming it; a file that is not a labels file is refused."""
        with self._read_lock:
            return list(self._refresh().events)

    def state(self) -> dict[str, tuple[str, ...]]:
        """The label of every labelled track (path -> its tags; ``()``: none of the tags)."""
        with self._read_lock:
            return self._refresh().fold.labels()

    def _newest(self, annotator: str, current: bool = False) -> LabelEvent | None:
        """``annotator``'s newest surviving label event (what an undo would revoke); ``current``: only while it is
        still its track's label (another annotator's newer label of the track makes the same label news)."""
        with self._read_lock:
            fold = self._refresh().fold
            stack = fold.stacks.get(annotator, [])
            if not stack or (current and fold.per_track[stack[-1].path][-1] is not stack[-1]):
                return None
            return stack[-1]

    def _refresh(self) -> _Read:
        """Replay the lines appended since the last read (all of them when the file is not the one read
        before: another inode, shorter, or other bytes just before the point read)."""
        read = self._read
        with open(self.path, "rb") as handle:
            st = os.fstat(handle.fileno())
            if ((st.st_dev, st.st_ino) != read.identity or st.st_size < read.offset or not read.still_there(handle)
                    or (st.st_size == read.seen[0] and st.st_mtime_ns != read.seen[1])):  # rewritten, not grown
                read = self._read = _Read((st.st_dev, st.st_ino))
            read.seen = (st.st_size, st.st_mtime_ns)
            handle.seek(read.offset)
            data = handle.read()
        data = data[: data.rfind(b"\n") + 1]  # a line still being written (or torn) waits for its newline
        if not data and read.offset:
            return read
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = (read.line + 1 if read.offset else 1) + data.count(b"\n", 0, exc.start)  # data's first line, on
            raise DatasetError(f"{self.path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}; saved in another "
                               "encoding, e.g. by a spreadsheet); save it again as UTF-8 ('CSV UTF-8')") from None
        if not read.offset and text.startswith("\ufeff"):  # saved again by a spreadsheet ("CSV UTF-8")
            text = text[1:]
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not read.offset:
            if not rows or tuple(rows[0]) != FIELDS:
                raise DatasetError(f"{self.path}: not a labels file (expected the header {','.join(FIELDS)}); "
                                   "point --out at a new folder or at an existing labelling project")
            rows = rows[1:]
        for row in rows:
            read.line += 1
            if len(row) != len(FIELDS) or row[4] not in ACTIONS:
                log.warning("%s:%d: skipped a malformed line %r (a writer killed mid-line, or an edit); expected "
                            "%s with action one of %s", self.path, read.line, row, ",".join(FIELDS), ACTIONS)
                continue
            tags = tuple(t for t in row[1].split(TAG_SEP) if t)
            event = LabelEvent(row[0], tags, row[2], row[3], row[4])
            read.events.append(event)
            read.fold.apply(event)
        read.advance(data)
        return read


class _Fold:
    """The replay of label events, one at a time: ``stacks`` (per annotator, the surviving label events in
    order) and, per track, its surviving label events; :meth:`labels` is the state."""

    def __init__(self) -> None:
        self.per_track: dict[str, list[LabelEvent]] = {}
        self.stacks: dict[str, list[LabelEvent]] = {}

    def apply(self, e: LabelEvent) -> None:
        if e.action == "label":
            self.per_track.setdefault(e.path, []).append(e)
            self.stacks.setdefault(e.annotator, []).append(e)
            return
        stack = self.stacks.get(e.annotator, [])
        if stack and stack[-1].path == e.path:
            revoked = stack.pop()
            history = self.per_track.get(e.path, [])
            for i in range(len(history) - 1, -1, -1):  # the newest equal event
                if history[i] == revoked:
                    del history[i]
                    break

    def labels(self) -> dict[str, tuple[str, ...]]:
        return {p: h[-1].tags for p, h in self.per_track.items() if h}


class _Read:
    """How far a :class:`LabelStore` has read its file: the file's identity, its size and mtime then, the bytes
    consumed (whole lines), the rows reached, the last bytes consumed (to notice a rewrite), the events and their
    fold."""
    TAIL = 256

    def __init__(self, identity: tuple[int, int] | None = None) -> None:
        self.identity = identity
        self.seen = (-1, -1)  # the file's size and mtime at the last read
        self.offset = 0
        self.line = 1  # the header
        self.tail = b""
        self.events: list[LabelEvent] = []
        self.fold = _Fold()

    def still_there(self, handle) -> bool:
        if not self.tail:
            return True
        handle.seek(self.offset - len(self.tail))
        return handle.read(len(self.tail)) == self.tail

    def advance(self, data: bytes) -> None:
        self.offset += len(data)
        self.tail = (self.tail + data)[-self.TAIL:]
