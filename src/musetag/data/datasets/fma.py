"""FMA (https://github.com/mdeff/fma) metadata reader.

``tracks.csv`` has a two-level column header (``track,genre_top``, ``set,split``...) followed by
a ``track_id`` index row; audio lives at ``fma_<subset>/<first 3 digits>/<6-digit id>.mp3``.
Subsets nest: small within medium within large. Labels: ``genre_top`` (one per track, multiclass)
or ``genres`` / ``genres_all`` (multi-label; names from ``genres.csv`` when given, ids otherwise).
The official ``split`` column gives train / validation / test; groups are artists.

Dataset config::

    reader = "fma"
    task = "multiclass"
    [paths]
    tracks = ".../fma_metadata/tracks.csv"
    genres = ".../fma_metadata/genres.csv"    # optional
    audio_root = ".../"                       # holds fma_small/ (or is the fma_small folder)
    [options]
    subset = "small"                          # small | medium | large
    labels = "genre_top"                      # genre_top | genres | genres_all
"""
from __future__ import annotations

import ast
import logging
from pathlib import Path

from musetag.data.datasets.registry import ReaderSpec, register_reader
from musetag.data.manifest import TrackRecord, normalize_split
from musetag.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

SUBSETS = ("small", "medium", "large")
LABELS = ("genre_top", "genres", "genres_all")
# Zero-length / undecodable MP3s of fma_small (documented upstream in the FMA repository).
BROKEN_TRACKS = {99134, 108925, 133297}


def audio_path(audio_root: str | Path, track_id: int, subset: str = "small") -> Path:
    """``<root>/fma_<subset>/<first 3 digits>/<6-digit id>.mp3`` (``root`` may be the fma_* folder)."""
    root = Path(audio_root)
    tid = f"{int(track_id):06d}"
    base = root if root.name.startswith("fma_") else root / f"fma_{subset}"
    return base / tid[:3] / f"{tid}.mp3"


def _genre_names(path: Path | None) -> dict[int, str]:
    if path is None:
        return {}
    import pandas as pd

    try:
        genres = pd.read_csv(path, index_col=0)
    except FileNotFoundError:
        raise DatasetError(f"{path}: genres.csv not found; fix paths.genres or remove it") from None
    if "title" not in genres.columns:
        raise DatasetError(f"{path}: expected FMA genres.csv with columns genre_id,...,title; found {list(genres.columns)}")
    return {int(i): str(t) for i, t in genres["title"].items()}


def read_fma(
    tracks_csv: str | Path,
    *,
    subset: str = "small",
    labels: str = "genre_top",
    audio_root: str | Path | None = None,
    genres_csv: str | Path | None = None,
    skip_broken: bool = True,
) -> list[TrackRecord]:
    import pandas as pd

    if subset not in SUBSETS:
        raise ConfigError(f"FMA subset {subset!r}; use one of {', '.join(SUBSETS)}")
    if labels not in LABELS:
        raise ConfigError(f"FMA labels {labels!r}; use one of {', '.join(LABELS)}")
    tracks_csv = Path(tracks_csv)
    if not tracks_csv.is_file():
        raise DatasetError(f"{tracks_csv}: FMA tracks.csv not found; fix paths.tracks")
    try:
        tracks = pd.read_csv(tracks_csv, index_col=0, header=[0, 1], low_memory=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"{tracks_csv}: cannot parse as FMA tracks.csv (two-row header): {exc}") from None
    needed = [("set", "subset"), ("set", "split"), ("track", labels), ("artist", "id")]
    missing = [c for c in needed if c not in tracks.columns]
    if missing:
        raise DatasetError(
            f"{tracks_csv}: missing column(s) {', '.join('/'.join(c) for c in missing)}; expected FMA's "
            "tracks.csv with its two-row header (e.g. set/subset, set/split, track/genre_top, artist/id)"
        )
    allowed = SUBSETS[: SUBSETS.index(subset) + 1]
    tracks = tracks[tracks[("set", "subset")].isin(allowed)]
    names = _genre_names(Path(genres_csv) if genres_csv else None)
    broken = sorted(BROKEN_TRACKS & {int(i) for i in tracks.index}) if skip_broken else []
    if broken:
        log.warning("FMA: skipping %d known-broken track(s) %s", len(broken), ", ".join(f"{b:06d}" for b in broken))
    has_duration = ("track", "duration") in tracks.columns
    records, unlabelled = [], 0
    for track_id, row in tracks.iterrows():
        tid = int(track_id)
        if tid in BROKEN_TRACKS and skip_broken:
            continue
        value = row[("track", labels)]
        if labels == "genre_top":
            tags = (str(value),) if isinstance(value, str) and value else ()
        else:
            try:
                ids = ast.literal_eval(value) if isinstance(value, str) else []
            except (ValueError, SyntaxError):
                raise DatasetError(f"{tracks_csv}: track {tid}: track/{labels} = {value!r} is not a list of genre ids") from None
            tags = tuple(names.get(int(g), str(int(g))) for g in ids)
        if not tags:
            unlabelled += 1
            continue
        duration = row[("track", "duration")] if has_duration else None
        records.append(TrackRecord(
            id=f"{tid:06d}",
            audio_path=audio_path(audio_root, tid, subset) if audio_root else None,
            tags=tags,
            split=normalize_split(row[("set", "split")], source=f"{tracks_csv}: track {tid}"),
            group=str(row[("artist", "id")]),
            duration=float(duration) if duration is not None and duration == duration else None,
        ))
    if unlabelled:
        log.info("FMA: %d track(s) without %s skipped", unlabelled, labels)
    return records


def _read(config) -> list[TrackRecord]:
    spec = SPEC
    return read_fma(
        config.paths["tracks"],
        subset=str(spec.option(config, "subset")),
        labels=str(spec.option(config, "labels")),
        audio_root=config.paths.get("audio_root"),
        genres_csv=config.paths.get("genres"),
        skip_broken=bool(spec.option(config, "skip_broken")),
    )


SPEC = register_reader(ReaderSpec(
    name="fma",
    read=_read,
    required_paths=("tracks",),
    optional_paths=("genres", "audio_root"),
    options={"subset": "small", "labels": "genre_top", "skip_broken": True},
))
