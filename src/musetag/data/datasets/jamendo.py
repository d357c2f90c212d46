"""MTG-Jamendo (https://github.com/MTG/mtg-jamendo-dataset) metadata reader.

The ``autotagging*.tsv`` files are tab-separated with CRLF line ends and the header
``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS``; a row carries one tag per column from column 6
on, each with its category prefix (``mood/theme---happy``), which musetag shows without the prefix.
``PATH`` (``48/948.mp3``) is relative to the audio root; the official mel-spectrogram is the same
path with ``.npy`` under the mel-spectrogram root.

Dataset config::

    reader = "jamendo"
    [paths]
    splits_dir = ".../mtg-jamendo/splits"     # holds split-0 ... split-4 (or use metadata = one .tsv)
    audio_root = ".../audio"                  # optional: the MP3s
    melspec_root = ".../melspecs"             # optional: the official .npy mel-spectrograms
    [options]
    subset = "moodtheme"                      # moodtheme | genre | instrument | top50 | all
    split = 0                                 # split-N
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from musetag.data.datasets.registry import ReaderSpec, register_reader
from musetag.data.manifest import SPLITS, TrackRecord, check_group_disjoint
from musetag.data.tags import PREFIX_SEPARATOR, strip_prefix
from musetag.errors import ConfigError, DatasetError
from musetag.textfiles import read_text

log = logging.getLogger(__name__)

HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
SUBSETS = {"moodtheme": "autotagging_moodtheme", "genre": "autotagging_genre",
           "instrument": "autotagging_instrument", "top50": "autotagging_top50tags", "all": "autotagging"}


def split_file(splits_dir: str | Path, subset: str = "moodtheme", split: int = 0, part: str = "train") -> Path:
    """Path of an official split file, e.g. ``split-0/autotagging_moodtheme-train.tsv``."""
    if subset not in SUBSETS:
        raise ConfigError(f"unknown MTG-Jamendo subset {subset!r}; use one of {', '.join(SUBSETS)}")
    return Path(splits_dir) / f"split-{int(split)}" / f"{SUBSETS[subset]}-{part}.tsv"


def read_jamendo_tsv(
    path: str | Path,
    *,
    split: str | None = None,
    audio_root: str | Path | None = None,
    melspec_root: str | Path | None = None,
    keep_prefix: bool = False,
) -> list[TrackRecord]:
    """Parse one ``autotagging*.tsv`` file into records (tags without their category prefix).

    A tag name that would collide with another category's tag once the prefix is removed (for
    example in the ``all`` file) keeps its prefix, so no two tags are merged.
    """
    path = Path(path)
    try:
        # universal newlines, as open(newline=None) reads: the files' CRLF becomes "\n"
        lines = read_text(path, "MTG-Jamendo metadata file").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    except FileNotFoundError:
        raise DatasetError(f"{path}: MTG-Jamendo metadata file not found; check paths in the dataset config") from None
    header = tuple(lines[0].rstrip("\r").split("\t")) if lines else ()
    if header[:6] != HEADER:
        raise DatasetError(
            f"{path}: not an MTG-Jamendo autotagging file; expected the header {' '.join(HEADER)} "
            f"(tab-separated), found {' '.join(header) or 'an empty file'}"
        )
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 6:
            raise DatasetError(
                f"{path}:{lineno}: expected at least 6 tab-separated columns "
                f"({' '.join(HEADER)}), found {len(cols)}; the file may be truncated or not tab-separated"
            )
        try:
            duration = float(cols[4])
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: DURATION {cols[4]!r} is not a number") from None
        rows.append((cols[0], cols[1], cols[3], duration, [t.strip() for t in cols[5:] if t.strip()]))
    names = _display_names({t for row in rows for t in row[4]}, keep_prefix=keep_prefix)
    audio_root = Path(audio_root) if audio_root else None
    melspec_root = Path(melspec_root) if melspec_root else None
    records = []
    for track_id, artist, rel, duration, tags in rows:
        records.append(TrackRecord(
            id=track_id,
            audio_path=audio_root / rel if audio_root else None,
            feature_path=(melspec_root / rel).with_suffix(".npy") if melspec_root else None,
            tags=tuple(dict.fromkeys(names[t] for t in tags)),
            split=split,
            group=artist,
            duration=duration,
            extra={"path": rel},
        ))
    return records


def _display_names(tags: set[str], *, keep_prefix: bool) -> dict[str, str]:
    if keep_prefix:
        return {t: t for t in tags}
    by_name: dict[str, list[str]] = defaultdict(list)
    for t in tags:
        by_name[strip_prefix(t)].append(t)
    out = {}
    for name, full in by_name.items():
        if len(full) == 1:
            out[full[0]] = name
        else:
            log.warning("tags %s share the name %r without their category; keeping the prefixes", sorted(full), name)
            out.update({t: t for t in full})
    return out


def read_jamendo_split(
    splits_dir: str | Path,
    subset: str = "moodtheme",
    split: int = 0,
    *,
    audio_root: str | Path | None = None,
    melspec_root: str | Path | None = None,
    keep_prefix: bool = False,
    check_artists: bool = True,
) -> list[TrackRecord]:
    """The three official split files of ``split-N`` as one manifest (train, validation, test)."""
    records: list[TrackRecord] = []
    for part in SPLITS:
        path = split_file(splits_dir, subset, split, part)
        if not path.is_file():
            raise DatasetError(
                f"{path}: official split file not found; paths.splits_dir must hold split-{split}/ with "
                f"{SUBSETS[subset]}-{{train,validation,test}}.tsv (from mtg-jamendo-dataset/data/splits)"
            )
        records += read_jamendo_tsv(path, split=part, audio_root=audio_root, melspec_root=melspec_root,
                                    keep_prefix=True)
    # Strip prefixes consistently across the three files.
    names = _display_names({t for r in records for t in r.tags}, keep_prefix=keep_prefix)
    records = [TrackRecord(r.id, r.audio_path, r.feature_path, tuple(dict.fromkeys(names[t] for t in r.tags)),
                           r.split, r.group, r.duration, r.extra) for r in records]
    if check_artists:
        check_group_disjoint(records, (("train", "test"), ("train", "validation"), ("validation", "test")),
                             source=f"{Path(splits_dir) / f'split-{split}'} ({subset})")
    return records


def _read(config) -> list[TrackRecord]:
    spec = READERS_SPEC
    audio_root = config.paths.get("audio_root")
    melspec_root = config.paths.get("melspec_root")
    if audio_root is None and melspec_root is None:
        log.info("%s: no audio_root or melspec_root; records carry metadata only", config.where)
    for key, root in (("audio_root", audio_root), ("melspec_root", melspec_root)):
        if root is not None and not root.is_dir():
            raise DatasetError(f"{config.where}: paths.{key} = {root} is not a folder; fix the path")
    keep_prefix = bool(spec.option(config, "keep_prefix"))
    if "metadata" in config.paths:
        return read_jamendo_tsv(config.paths["metadata"], audio_root=audio_root, melspec_root=melspec_root,
                                keep_prefix=keep_prefix)
    subset = str(spec.option(config, "subset"))
    if subset not in SUBSETS:
        raise ConfigError(f"{config.where}: options.subset = {subset!r}; use one of {', '.join(SUBSETS)}")
    split = spec.option(config, "split")
    if isinstance(split, str) and split.strip().isdigit():
        split = int(split)  # split = "0" read as before
    if isinstance(split, bool) or not isinstance(split, int) or split < 0:
        raise ConfigError(f"{config.where}: options.split = {split!r}; give the number N of the official "
                          "split-N folder, e.g. split = 0 (without quotes)")
    return read_jamendo_split(
        config.paths["splits_dir"], subset, split,
        audio_root=audio_root, melspec_root=melspec_root, keep_prefix=keep_prefix,
        check_artists=bool(spec.option(config, "check_artists")),
    )


READERS_SPEC = register_reader(ReaderSpec(
    name="jamendo",
    read=_read,
    one_of_paths=("splits_dir", "metadata"),
    optional_paths=("audio_root", "melspec_root"),
    options={"subset": "moodtheme", "split": 0, "keep_prefix": False, "check_artists": True},
))

__all__ = ["read_jamendo_tsv", "read_jamendo_split", "split_file", "HEADER", "SUBSETS", "PREFIX_SEPARATOR"]
