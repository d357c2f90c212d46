"""Result writers for ``musetag tag``, chosen by the output file's extension.

Every format survives a kill and can be resumed:

``.jsonl``
    one JSON object per line, appended whole and flushed + fsynced after each file;
``.csv``
    ``path, status, duration, top_tags, decisions, warnings`` then one score column per tag,
    appended the same way; ``top_tags`` reads ``tag:0.912;tag2:0.431``, ``decisions``
    ``tag;tag2``, ``warnings`` the warnings joined by `` | `` (empty for most files);
``.json``
    one document ``{"tags": [...], "results": [...]}`` rewritten to a temporary file and renamed
    over the output (every few seconds and at the end), so it is always whole.

With ``musetag tag --segments`` JSON and JSONL rows also hold ``segments``: one
``{"start", "end", "scores": [one per tag, vocabulary order]}`` per window (seconds); CSV refuses
``--segments`` (it stays one row per file).

Every row has ``status`` (``ok`` or the file's error message) and ``warnings`` (a list in JSON and
JSONL). A file that decodes is tagged, but scores that should not be read as a judgement of music
are flagged, never returned bare: ``too_short: ...`` when the audio is shorter than the model's
input window (it was zero-padded), ``silent: ...`` when its peak is at or below -60 dBFS
(digital silence included), ``decoder: ...`` when the decoder skipped damaged data. See
:mod:`musetag.inference.checks`. Files written before the ``warnings`` column existed are read back
(and rewritten with it) on resume.

On start an existing output is read back: rows it holds are "done" and are skipped, a torn last
line (from a kill in the middle of a write) is dropped, and with ``retry_errors`` error rows are
removed so those files are tagged again; a ``--segments`` run drops the ok rows that have no ``segments``
(tagged earlier without it) and tags those files again. A run with model metadata also keeps ``tags.csv.run.json``
beside the output (:mod:`musetag.tag.run_record`) and refuses to resume an output of another model
or decision rule.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable

from musetag.errors import ConfigError

log = logging.getLogger(__name__)

FIXED_COLUMNS = ("path", "status", "duration", "top_tags", "decisions", "warnings")
#: the CSV columns before ``warnings`` was added (still read back)
_OLD_FIXED_COLUMNS = FIXED_COLUMNS[:5]
WARNING_SEPARATOR = " | "
FORMATS = (".csv", ".json", ".jsonl")


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".ndjson":
        suffix = ".jsonl"
    if suffix not in FORMATS:
        ray = " (.parquet is written by --engine ray)" if suffix == ".parquet" else ""
        raise ConfigError(f"--out {path}: unknown output format {suffix or '(none)'}; use .csv, .json or .jsonl{ray}")
    return suffix


def check_segments_output(out: str | os.PathLike | None, engine: str = "local") -> None:
    """``--segments`` needs an output that holds a list per row (.jsonl / .json)."""
    if engine != "local":
        raise ConfigError(f"--segments is not supported with --engine {engine}; tag with the local engine")
    if out is None or output_format(out) == ".csv":
        where = "without --out" if out is None else f"--out {out}"
        raise ConfigError(
            f"--segments {where}: the per-window scores need a .jsonl or .json results file (CSV stays one row "
            "per file); pass --out RESULTS.jsonl"
        )


def row_key(path: str, base: str | None = None) -> str:
    """Key used to recognise a file already done (absolute, normalised path); a relative ``path`` is taken
    from ``base``, the folder the run that wrote it ran in (None: the current one)."""
    return os.path.normcase(os.path.abspath(os.path.join(base, path) if base else path))


def resume_base(recorded: Any) -> str:
    """The folder an output's relative paths are taken from: the one recorded by the run that started it, while it
    exists (a moved or renamed project folder: the current one, where the same relative paths now lead)."""
    return recorded if isinstance(recorded, str) and os.path.isdir(recorded) else os.getcwd()


def resumed_elsewhere(base: str) -> bool:
    """Whether this run is not in ``base``, the folder the output's relative paths are taken from (its new rows
    are then written absolute)."""
    return os.path.normcase(os.path.abspath(base)) != os.path.normcase(os.getcwd())


def done_keys(paths: Iterable[str], base: str) -> set[str]:
    """Keys of the files an output lists: each relative path from ``base`` and, as well, from the current folder
    (a copied project folder, or one entered by another path, lists the same files under the same relative
    names)."""
    keys = set()
    for p in paths:
        keys.add(row_key(p, base))
        if not os.path.isabs(p):
            keys.add(row_key(p))
    return keys


def json_text(doc: Any, **kw) -> str:
    """``doc`` as JSON text that UTF-8 can write: a file name that is not UTF-8 (its bytes are lone surrogates in
    Python) is written as ``\\udcff`` escapes, which read back as the same name."""
    text = json.dumps(doc, ensure_ascii=False, **kw)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc, ensure_ascii=True, **kw)
    return text


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def row_to_csv(row: dict[str, Any], tags: list[str]) -> list[str]:
    scores = row.get("scores") or {}
    duration = row.get("duration")
    return [
        row["path"],
        row["status"],
        "" if duration is None else f"{duration:.3f}",
        ";".join(f"{t['tag']}:{t['score']:.4f}" for t in row.get("top_tags") or []),
        ";".join(row.get("decisions") or []),
        WARNING_SEPARATOR.join(" ".join(str(w).split()) for w in row.get("warnings") or []),
        *("" if tag not in scores else _fmt(scores[tag]) for tag in tags),
    ]


def csv_to_row(values: list[str], tags: list[str], *, has_warnings: bool = True) -> dict[str, Any]:
    if has_warnings:
        path, status, duration, top, decisions, warnings, *scores = values
    else:  # a file written before the warnings column
        path, status, duration, top, decisions, *scores = values
        warnings = ""
    top_tags = []
    for item in filter(None, top.split(";")):
        tag, _, score = item.rpartition(":")
        top_tags.append({"tag": tag, "score": float(score)})
    return {
        "path": path,
        "status": status,
        "duration": float(duration) if duration else None,
        "top_tags": top_tags,
        "decisions": [d for d in decisions.split(";") if d],
        "warnings": [w for w in warnings.split(WARNING_SEPARATOR) if w],
        "scores": {t: float(s) for t, s in zip(tags, scores) if s != ""},
    }


#: an output file larger than this is not read back for resume (override: MUSETAG_MAX_RESUME_BYTES)
MAX_RESUME_BYTES = 8 << 30


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> bool:
    """Whether ``path`` exists as something musetag may read back and replace: a regular file of a
    bounded size. A device (``/dev/full``), pipe or folder is refused, never read or replaced."""
    path = Path(path)
    if not os.path.lexists(path):
        return False
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"{flag} {path} is a dangling symbolic link; remove it or choose another {flag}")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a device, pipe or socket)"
        raise ConfigError(f"{flag} {path} exists and is {kind}; give the path of a results file to write")
    limit = int(os.environ.get("MUSETAG_MAX_RESUME_BYTES", MAX_RESUME_BYTES))
    size = path.stat().st_size
    if size > limit:
        raise ConfigError(
            f"{flag} {path} holds {size:,} bytes, more than the {limit:,} musetag reads back to resume; "
            f"move it away, write to another {flag} (e.g. per --shard), or raise MUSETAG_MAX_RESUME_BYTES"
        )
    return True


def read_results(path: str | os.PathLike, tags: list[str] | None = None) -> list[dict[str, Any]]:
    """Read the complete rows of a results file (any format); a torn last line is ignored.

    CSV and JSONL are read line by line (memory holds the rows, not the file); only regular files of
    a bounded size are read (:func:`check_output_file`)."""
    path = Path(path)
    fmt = output_format(path)
    if not check_output_file(path):
        return []
    if fmt == ".json":
        data = path.read_bytes()
        if not data.strip():
            return []
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is not a musetag JSON results file ({exc}); choose another --out") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
            raise ConfigError(f"{path} is not a musetag JSON results file; choose another --out")
        return list(doc["results"])
    rows: list[dict[str, Any]] = []
    # surrogateescape: a file name that is not UTF-8 was written as its own bytes (below) and reads back the same
    with open(path, "r", encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:  # a BOM: an editor's
        lines = (line for line in fh if line.endswith("\n"))  # a torn last line has no newline
        if fmt == ".jsonl":
            others = []  # line numbers that are not musetag rows
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if isinstance(row, dict) and "path" in row and "status" in row:
                    rows.append(row)
                else:
                    others.append(n)
            if others and not rows:  # somebody else's file: never replaced
                raise ConfigError(f"{path} is not a musetag JSONL results file (line {others[0]} is not a result "
                                  "row); choose another --out")
            if others:
                log.warning("%s: %d line(s) that are not result rows (first: line %d) are dropped, and their files "
                            "tagged again", path, len(others), others[0])
            return rows
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None:
            return []
        has_warnings = tuple(header[: len(FIXED_COLUMNS)]) == FIXED_COLUMNS
        if not has_warnings and tuple(header[: len(_OLD_FIXED_COLUMNS)]) != _OLD_FIXED_COLUMNS:
            raise ConfigError(f"{path} is not a musetag CSV results file (header {header[:5]}); choose another --out")
        file_tags = header[len(FIXED_COLUMNS if has_warnings else _OLD_FIXED_COLUMNS):]
        if tags is not None and file_tags != list(tags):
            raise ConfigError(
                f"{path} was written by a model with different tags ({len(file_tags)} columns, this model has "
                f"{len(tags)}); choose another --out or delete the file"
            )
        for values in reader:
            if len(values) == len(header):
                rows.append(csv_to_row(values, file_tags, has_warnings=has_warnings))
    return rows


class ResultWriter:
    """Append-safe writer of result rows; ``done`` holds the keys of files already in the output."""

    def __init__(
        self,
        path: str | os.PathLike,
        tags: list[str],
        *,
        resume: bool = True,
        retry_errors: bool = False,
        meta: dict[str, Any] | None = None,
        json_flush_seconds: float = 5.0,
        segments: bool = False,
    ) -> None:
        self.path = Path(path)
        self.format = output_format(self.path)
        self.tags = list(tags)
        self.meta = dict(meta or {})
        self.json_flush_seconds = json_flush_seconds
        from musetag.outputs import check_writable

        check_writable(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        if check_output_file(self.path) and resume:
            rows = read_results(self.path, self.tags)
            if rows and self.format != ".csv":
                names = list((rows[0].get("scores") or {}).keys()) if rows[0].get("status") == "ok" else None
                if names is not None and names != self.tags:
                    raise ConfigError(
                        f"{self.path} was written by a model with different tags; choose another --out or delete it"
                    )
        # before any row is dropped: an output of another model is refused whole, never emptied by the filters
        record = self._check_run(bool(rows))
        if rows:
            if retry_errors:
                rows = [r for r in rows if r.get("status") == "ok"]
            if segments:  # `tag --segments` into an output tagged without: those files are tagged again, or
                # `musetag plot` would keep answering "tag with --segments" after the user did just that
                kept = [r for r in rows if r.get("status") != "ok" or r.get("segments")]
                if len(kept) < len(rows):
                    log.warning("%s: %d file(s) were tagged without --segments; tagging them again for their "
                                "per-window scores", self.path, len(rows) - len(kept))
                    rows = kept
        #: the folder relative paths in the output are taken from (the run that started it ran there); a run
        #: resumed from another folder writes its rows' paths absolute, so every row still names its file
        self.base = resume_base((record or {}).get("cwd"))
        self._absolute = resumed_elsewhere(self.base)
        self.rows = rows  # kept for .json (rewritten whole); for csv/jsonl only the keys matter
        self.done = done_keys((r["path"] for r in rows), self.base)
        #: files whose kept row is an error (tried by an earlier run; ``retry_errors`` tries them again)
        self.failed_before = done_keys((r["path"] for r in rows if r.get("status") != "ok"), self.base)
        self._fh = None
        self._last_flush = time.monotonic()
        self._dirty = False
        self._start(rewrite=self.path.exists())
        if record is not None:
            from musetag.tag.run_record import write_run_record

            write_run_record(self.path, record)

    # -- setup ---------------------------------------------------------------------------------
    def _check_run(self, resuming: bool) -> dict[str, Any] | None:
        """Refuse to add rows of another model or decision rule to an output (:mod:`musetag.tag.run_record`);
        the record to write once the output is started (this run's, when it starts the output or continues
        one made the same way)."""
        if not isinstance(self.meta.get("model"), dict):
            return None
        from musetag.tag import run_record

        held = run_record.read_run_record(self.path)
        if resuming and held is not None:
            diff = run_record.differences(held, self.meta)
            if diff:
                raise ConfigError(
                    f"{self.path} was written by {run_record.describe(held)}; this run uses "
                    f"{run_record.describe(self.meta)} (another {' and '.join(diff)}), and its rows would be mixed "
                    f"with the earlier ones; choose another --out, or delete {self.path} and "
                    f"{run_record.run_record_path(self.path)} to start over"
                )
        # an output from before the record existed stays unrecorded; the folder of the run that started the
        # output is kept (its rows' relative paths are relative to it)
        if resuming and held is None:
            return None
        if resuming and not isinstance(held.get("cwd"), str):  # recorded before the folder was
            return dict(self.meta)
        return {**self.meta, "cwd": resume_base(held.get("cwd")) if resuming else os.getcwd()}

    def _start(self, rewrite: bool) -> None:
        if self.format == ".json":
            self._write_json()
            return
        # rewrite what was kept (drops a torn tail and retried error rows), atomically
        if rewrite or not self.path.exists():
            self._atomic_write(self._render(self.rows))
        self._fh = open(self.path, "a", encoding="utf-8", errors="surrogateescape", newline="")

    def _render(self, rows: Iterable[dict[str, Any]]) -> str:
        buf = io.StringIO(newline="")
        if self.format == ".csv":
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow([*FIXED_COLUMNS, *self.tags])
            for row in rows:
                writer.writerow(row_to_csv(row, self.tags))
        elif self.format == ".jsonl":
            for row in rows:
                buf.write(json_text(row) + "\n")
        else:
            doc = {**self.meta, "tags": self.tags, "results": list(rows)}
            buf.write(json_text(doc, indent=1) + "\n")
        return buf.getvalue()

    def _atomic_write(self, text: str) -> None:
        from musetag.outputs import write_bytes_atomic

        write_bytes_atomic(self.path, text.encode("utf-8", "surrogateescape"), durable=True)

    def _write_json(self) -> None:
        self._atomic_write(self._render(self.rows))
        self._last_flush = time.monotonic()
        self._dirty = False

    # -- use -------------------------------------------------------------------------------------
    def is_done(self, path: str) -> bool:
        return row_key(path) in self.done

    def failed_earlier(self, path: str) -> bool:
        return row_key(path) in self.failed_before

    def write(self, row: dict[str, Any]) -> None:
        row = dict(row)
        row["status"] = " ".join(str(row["status"]).split())  # one line, always
        if self._absolute and not os.path.isabs(row["path"]):
            row["path"] = os.path.abspath(row["path"])
        self.done.add(row_key(row["path"]))
        if self.format == ".json":
            self.rows.append(row)
            self._dirty = True
            if time.monotonic() - self._last_flush >= self.json_flush_seconds:
                self._write_json()
            return
        if self.format == ".csv":
            buf = io.StringIO(newline="")
            csv.writer(buf, lineterminator="\n").writerow(row_to_csv(row, self.tags))
            line = buf.getvalue()
        else:
            line = json_text(row) + "\n"
        # one write of a complete line, then flush + fsync: a kill leaves whole rows (or a torn
        # tail that the next run drops)
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self.format == ".json":
            if self._dirty:
                self._write_json()
        elif self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
