"""A CSV/TSV manifest for a user's own music.

Columns: ``path`` (relative to the manifest's folder, or absolute), ``tags`` (``;``-separated; the
single class for a multiclass task), optional ``split`` (train / validation / test), optional
``group`` (artist: kept inside one split by the seeded split), optional ``id`` and ``duration``.
A ``.tsv`` file is tab-separated, anything else comma-separated.

Dataset config::

    reader = "csv"
    task = "multilabel"
    preset = "jamendo96"
    [paths]
    manifest = "my_music.csv"
"""
from __future__ import annotations

import csv
from pathlib import Path

from musetag.data.datasets import ReaderSpec, register_reader
from musetag.data.manifest import TrackRecord, normalize_split
from musetag.errors import DatasetError


def read_csv_manifest(path: str | Path, *, tag_separator: str = ";", check_files: bool = True) -> list[TrackRecord]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found; fix paths.manifest in the dataset config")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        reader.fieldnames = fields
        missing = [c for c in ("path", "tags") if c not in fields]
        if missing:
            sep = "tab" if delimiter == "\t" else "comma"
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(missing)} ({sep}-separated header found: "
                f"{', '.join(fields) or 'none'}); a manifest needs path,tags and optionally split,group"
            )
        records, missing_files = [], []
        for lineno, row in enumerate(reader, start=2):
            raw = (row.get("path") or "").strip()
            if not raw:
                raise DatasetError(f"{path}:{lineno}: empty path; every row needs an audio file")
            audio = Path(raw).expanduser()
            audio = audio if audio.is_absolute() else (path.parent / audio)
            if check_files and not audio.is_file():
                missing_files.append((lineno, audio))
            tags = tuple(dict.fromkeys(t.strip() for t in (row.get("tags") or "").split(tag_separator) if t.strip()))
            duration = (row.get("duration") or "").strip()
            try:
                duration_value = float(duration) if duration else None
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: duration {duration!r} is not a number") from None
            records.append(TrackRecord(
                id=(row.get("id") or "").strip() or Path(raw).with_suffix("").as_posix(),
                audio_path=audio,
                tags=tags,
                split=normalize_split(row.get("split"), source=f"{path}:{lineno}"),
                group=(row.get("group") or "").strip() or None,
                duration=duration_value,
            ))
    if missing_files:
        shown = "; ".join(f"line {n}: {p}" for n, p in missing_files[:5])
        more = f" (and {len(missing_files) - 5} more)" if len(missing_files) > 5 else ""
        raise DatasetError(
            f"{path}: {len(missing_files)} audio file(s) not found: {shown}{more}; paths are relative to "
            "the manifest's folder: fix them or remove the rows"
        )
    return records


def _read(config) -> list[TrackRecord]:
    return read_csv_manifest(config.paths["manifest"], tag_separator=str(config.options.get("tag_separator", ";")))


register_reader(ReaderSpec(name="csv", read=_read, required_paths=("manifest",), options={"tag_separator": ";"}))
