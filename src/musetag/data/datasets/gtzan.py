"""GTZAN-style genre folders: ``<root>/<genre>/<name>.<audio extension>``.

The split is either a user-provided list per split (one file per line, e.g. the fault-filtered
split; entries are matched by file name without extension) or, without lists, musetag's seeded
stratified 80/10/10 split (SoundFusion), set in the dataset config's ``[split]`` table.

Dataset config::

    reader = "gtzan"
    task = "multiclass"
    [paths]
    root = ".../gtzan"          # genre folders (or a folder holding one folder of genre folders)
    # labels = ".../labels.csv" # alternative: CSV with columns path,genre (paths relative to it)
    # train_list = ...; validation_list = ...; test_list = ...
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from musetag.data.datasets.registry import ReaderSpec, register_reader
from musetag.data.manifest import TrackRecord
from musetag.errors import DatasetError
from musetag.textfiles import read_text

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = {".wav", ".mp3", ".flac", ".ogg", ".oga", ".au", ".aiff", ".aif", ".opus"}


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                  and not p.name.startswith("."))


def _genre_root(root: Path) -> Path:
    """Descend through wrapper folders (``audio/``, ``genres_original/``...) to the genre folders."""
    current = root
    for _ in range(3):
        subdirs = sorted(p for p in current.iterdir() if p.is_dir() and not p.name.startswith("."))
        if any(_audio_files(d) for d in subdirs):
            return current
        if len(subdirs) == 1:
            current = subdirs[0]
            continue
        break
    raise DatasetError(
        f"{root}: no genre folders with audio files found; GTZAN layout is <root>/<genre>/<name>.wav "
        f"(any of {', '.join(sorted(AUDIO_EXTENSIONS))})"
    )


def read_gtzan(root: str | Path, *, split_lists: dict[str, Path] | None = None) -> list[TrackRecord]:
    """Records for every audio file under ``root/<genre>/``; ``split`` None unless lists are given."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: GTZAN root folder not found; fix paths.root")
    genre_root = _genre_root(root)
    records = []
    for genre_dir in sorted(p for p in genre_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in _audio_files(genre_dir):
            records.append(TrackRecord(id=path.stem, audio_path=path, tags=(genre_dir.name,)))
    return _apply_lists(records, split_lists)


def read_labels_csv(path: str | Path, *, split_lists: dict[str, Path] | None = None) -> list[TrackRecord]:
    """Records from a ``path,genre`` CSV (paths relative to the CSV's folder), e.g. gtzan3/labels.csv.
    UTF-8 with or without a byte-order mark, any line ends; an empty path or genre is an error naming the line."""
    import io

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: labels file not found; fix paths.labels")
    reader = csv.DictReader(io.StringIO(read_text(path, "labels file"), newline=""))
    reader.fieldnames = [f.strip() for f in (reader.fieldnames or [])]
    cols = set(reader.fieldnames)
    if not {"path", "genre"} <= cols:
        raise DatasetError(f"{path}: expected columns path,genre; found {', '.join(sorted(cols)) or 'none'}")
    records = []
    for row in reader:
        lineno = reader.line_num  # the row's last line (blank lines and quoted line breaks counted)
        raw, genre = (row.get("path") or "").strip(), (row.get("genre") or "").strip()
        if not raw and not genre:
            continue  # a blank line
        if not raw or not genre:
            raise DatasetError(f"{path}:{lineno}: empty {'path' if not raw else 'genre'}; every row needs an audio "
                               "file and its genre: fill it in or remove the row")
        audio = (path.parent / raw).resolve()
        if not audio.is_file():
            raise DatasetError(f"{path}:{lineno}: audio file {audio} not found; fix the path or remove the row")
        records.append(TrackRecord(id=Path(raw).stem, audio_path=audio, tags=(genre,)))
    return _apply_lists(records, split_lists)


def _apply_lists(records: list[TrackRecord], split_lists: dict[str, Path] | None) -> list[TrackRecord]:
    if not split_lists:
        return records
    assign: dict[str, str] = {}
    for split, list_path in split_lists.items():
        try:
            lines = read_text(list_path, "split list").splitlines()
        except FileNotFoundError:
            raise DatasetError(f"{list_path}: split list not found; fix paths.{split}_list") from None
        for line in lines:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            stem = Path(entry.replace("\\", "/")).name
            stem = stem.rsplit(".", 1)[0] if Path(stem).suffix.lower() in AUDIO_EXTENSIONS else stem
            if stem in assign and assign[stem] != split:
                raise DatasetError(f"{list_path}: {entry} is also listed in the {assign[stem]} list; a track belongs to one split")
            assign[stem] = split
    known = {r.id for r in records}
    unknown = sorted(set(assign) - known)
    if unknown:
        raise DatasetError(
            f"split lists name {len(unknown)} track(s) not found under the root (e.g. {', '.join(unknown[:5])}); "
            "check the lists match this copy of the corpus"
        )
    kept = [r.with_split(assign[r.id]) for r in records if r.id in assign]
    if len(kept) < len(records):
        log.info("split lists keep %d of %d tracks (the others are filtered out)", len(kept), len(records))
    return kept


def _read(config) -> list[TrackRecord]:
    lists = {s: config.paths[f"{s}_list"] for s in ("train", "validation", "test") if f"{s}_list" in config.paths}
    if lists and len(lists) != 3:
        raise DatasetError(f"{config.where}: give all three of train_list, validation_list, test_list (or none)")
    if "labels" in config.paths:
        return read_labels_csv(config.paths["labels"], split_lists=lists)
    return read_gtzan(config.paths["root"], split_lists=lists)


register_reader(ReaderSpec(
    name="gtzan",
    read=_read,
    one_of_paths=("root", "labels"),
    optional_paths=("train_list", "validation_list", "test_list"),
    options={},
))
