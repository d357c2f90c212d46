"""A CSV/TSV manifest for a user's own music.

Columns: ``path`` (relative to the manifest's folder, or absolute), ``tags`` (``;``-separated; the
single class for a multiclass task), optional ``split`` (train / validation / test), optional
``group`` (artist: kept inside one split by the seeded split), optional ``id`` and ``duration``; a regression
manifest needs no ``tags``.
A ``.tsv`` file is tab-separated, anything else comma-separated. A regression dataset
(``task = "regression"``, ``targets = ["valence", "arousal"]``) reads those numeric columns into
``record.extra["targets"]`` (a tuple in ``targets`` order); a missing or non-numeric value is an error
naming the line and the column.

Without an ``id`` column a track's id is its path without the extension (``songs/random``), unless
two different files share it (``random.flac`` and ``random.mp3``): those keep their extension
(``songs/random.flac``, ``songs/random.mp3``). The same file listed twice stays an error, however it is
spelled (relative or absolute, with ``..``, through a symlink, under two ids).

Dataset config::

    reader = "csv"
    task = "multilabel"
    preset = "jamendo96"
    [paths]
    manifest = "my_music.csv"
"""
from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

from musetag.data.datasets.registry import ReaderSpec, register_reader
from musetag.data.manifest import TrackRecord, normalize_split
from musetag.errors import DatasetError


def read_csv_manifest(path: str | Path, *, tag_separator: str = ";", check_files: bool = True,
                      targets: tuple[str, ...] = ()) -> list[TrackRecord]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found; fix paths.manifest in the dataset config")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    _check_utf8(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        reader.fieldnames = fields
        missing = [c for c in (("path",) if targets else ("path", "tags")) if c not in fields]  # regression: tags unused
        if missing:
            sep = "tab" if delimiter == "\t" else "comma"
            needs = "path and the target columns" if targets else "path,tags"
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(missing)} ({sep}-separated header found: "
                f"{', '.join(fields) or 'none'}); a manifest needs {needs} and optionally split,group"
            )
        absent = [c for c in targets if c not in fields]
        if absent:
            raise DatasetError(f"{path}: regression target column(s) {', '.join(absent)} not in the header "
                               f"({', '.join(fields)}); fix targets = [...] in the dataset TOML or add the columns")
        records, missing_files, derived = [], [], []
        files: dict = {}  # the file (device and inode, else the normalised path) -> its first line
        for lineno, row in enumerate(reader, start=2):
            raw = (row.get("path") or "").strip()
            if not raw:
                raise DatasetError(f"{path}:{lineno}: empty path; every row needs an audio file")
            audio = Path(raw).expanduser()
            audio = audio if audio.is_absolute() else (path.parent / audio)
            key = _file_key(audio) if check_files else os.path.abspath(audio)
            if key is None:
                missing_files.append((lineno, audio))
                key = os.path.abspath(audio)
            if key in files:
                raise DatasetError(
                    f"{path}: lines {files[key]} and {lineno} name the same audio file ({audio}); a file is one "
                    "track (listed twice it would be counted twice, and could sit in train and test at once): "
                    "remove one of the rows")
            files[key] = lineno
            tags = tuple(dict.fromkeys(t.strip() for t in (row.get("tags") or "").split(tag_separator) if t.strip()))
            duration = (row.get("duration") or "").strip()
            try:
                duration_value = float(duration) if duration else None
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: duration {duration!r} is not a number") from None
            given = (row.get("id") or "").strip()
            if not given:
                derived.append(len(records))
            records.append(TrackRecord(
                id=given or Path(raw).with_suffix("").as_posix(),
                audio_path=audio,
                tags=tags,
                split=normalize_split(row.get("split"), source=f"{path}:{lineno}"),
                group=(row.get("group") or "").strip() or None,
                duration=duration_value,
                extra={"targets": _numbers(row, targets, f"{path}:{lineno}")} if targets else {},
            ))
    records = _keep_apart(records, derived, path)
    if missing_files:
        shown = "; ".join(f"line {n}: {p}" for n, p in missing_files[:5])
        more = f" (and {len(missing_files) - 5} more)" if len(missing_files) > 5 else ""
        raise DatasetError(
            f"{path}: {len(missing_files)} audio file(s) not found: {shown}{more}; paths are relative to "
            "the manifest's folder: fix them or remove the rows"
        )
    return records


def _file_key(audio: Path):
    """What makes two rows the same file whatever their spelling (``a.ogg``, ``./x/../a.ogg``, an absolute path,
    a symlink): its device and inode; None when it is not a readable regular file."""
    try:
        st = audio.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _numbers(row: dict, columns: tuple[str, ...], where: str) -> tuple[float, ...]:
    """The regression targets of one row, each a finite number."""
    import math

    out = []
    for col in columns:
        raw = (row.get(col) or "").strip()
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value):
            what = "is empty" if not raw else f"is {raw!r}, not a finite number"
            raise DatasetError(f"{where}: column {col!r} {what}; every row of a regression dataset needs a number "
                               "in each target column: fill it in or remove the row")
        out.append(value)
    return tuple(out)


def _check_utf8(path: Path) -> None:
    """A manifest saved in another encoding (Latin-1, Windows-1252) is refused with the line to fix."""
    with open(path, "rb") as handle:
        for lineno, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = line[exc.start : exc.start + 1]
                raise DatasetError(
                    f"{path}:{lineno}: not UTF-8 text (byte 0x{bad.hex()} at column {exc.start + 1}; the file is "
                    "probably Latin-1/Windows-1252); save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 OLD > NEW`, "
                    "or 'CSV UTF-8' in a spreadsheet)"
                ) from None


def _keep_apart(records: list[TrackRecord], derived: list[int], path: Path) -> list[TrackRecord]:
    """Ids derived from paths that collide for different files (same stem, other extension) take
    the path with its extension instead."""
    from collections import Counter
    from dataclasses import replace

    def rel(record: TrackRecord) -> str:
        try:
            return record.audio_path.relative_to(path.parent).as_posix()
        except ValueError:
            return record.audio_path.as_posix()

    files_per_id: dict[str, set[str]] = {}
    for i in derived:
        files_per_id.setdefault(records[i].id, set()).add(str(records[i].audio_path))
    taken = Counter(r.id for r in records)
    for i in derived:
        record = records[i]
        if len(files_per_id[record.id]) > 1:  # different files: keep the extension
            new_id = rel(record)
            if taken[new_id] == 0:
                records[i] = replace(record, id=new_id)
    return records


def _read(config) -> list[TrackRecord]:
    return read_csv_manifest(config.paths["manifest"], tag_separator=str(config.options.get("tag_separator", ";")),
                             targets=tuple(getattr(config, "targets", ()) or ()))


register_reader(ReaderSpec(name="csv", read=_read, required_paths=("manifest",), options={"tag_separator": ";"}))
