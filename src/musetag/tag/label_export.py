"""Export a labelling project (``musetag label PROJECT_DIR --export OUT.csv``): a CSV manifest.

Columns ``path,tags,split,group`` (the format :mod:`musetag.data.datasets.csv_manifest` reads, so
``reader = "csv"`` + ``musetag prepare`` / ``train`` take it as is): every labelled track of the
project with its latest label (``tags`` ``;``-joined; empty: none of the tags), its absolute path,
its group and a seeded train/validation/test split that keeps every group inside one split
(:func:`musetag.data.manifest.seeded_split`). A regression project writes its targets as numeric
columns after ``group`` (``targets = [...]`` in the dataset TOML reads them).

The group (``--group-by``, :func:`track_groups`): ``folder``, the file's parent folder (relative to the
project folder; ``.`` for its top level), ``artist``, the file's artist tag (ID3, Vorbis comment,
RIFF INFO: read by libsndfile through soundfile; a file without one, or that soundfile cannot open,
falls back to its folder, and the count is logged as a warning), or ``file``, each track its own group.
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from musetag.data.manifest import TrackRecord, seeded_split
from musetag.errors import ConfigError, DatasetError
from musetag.tag.label_project import GROUP_BY, Project
from musetag.tag.label_store import TAG_SEP, LabelStore

log = logging.getLogger(__name__)
FRACTIONS = (0.7, 0.15, 0.15)


def artist_tag(path: str | os.PathLike) -> str:
    """The artist tag of an audio file ('' when it has none or soundfile cannot read the file)."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as handle:
            return (handle.artist or "").strip()
    except (RuntimeError, OSError, ValueError):  # sf.LibsndfileError is a RuntimeError
        return ""


def track_groups(project: Project, paths, group_by: str | None = None) -> dict[str, str]:
    """``{path: group}`` for ``paths`` (relative to the project folder); ``group_by`` None: the project's."""
    group_by = group_by or project.group_by
    if group_by not in GROUP_BY:
        raise ConfigError(f"--group-by {group_by!r}: use one of {', '.join(GROUP_BY)}")
    if group_by == "file":  # every track its own group: a flat folder still fills the three splits
        return {p: p for p in paths}
    folders = {p: os.path.dirname(p) or "." for p in paths}
    if group_by == "folder":
        return folders
    out, missing = {}, []
    for p in paths:
        artist = artist_tag(project.folder / p)
        out[p] = f"artist:{artist}" if artist else folders[p]
        if not artist:
            missing.append(p)
    if missing:
        log.warning("%s: %d of %d labelled file(s) have no artist tag (e.g. %s); they are grouped by their folder "
                    "instead", project.folder, len(missing), len(out), missing[0])
    return out


def _failures(project: Project) -> dict[str, str]:
    """The files the last embedding run could not read (``failures.csv``: path, error)."""
    path = project.dir / "failures.csv"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8", newline="") as handle:
        return {row["path"]: row.get("error", "") for row in csv.DictReader(handle) if row.get("path")}


def labelled_records(project: Project, group_by: str | None = None) -> list[TrackRecord]:
    """One record per labelled track (its latest label, its group); regression targets in ``extra``."""
    from musetag.tag.label_session import parse_values

    labels = LabelStore(project.labels_path).state()
    if not labels:
        raise DatasetError(f"{project.dir}: no labels yet; label some tracks on the page first")
    unreadable = sorted(set(labels) & set(_failures(project)))
    if unreadable:  # labelled before the file broke: prepare/train would stop on them
        log.warning("%s: %d labelled file(s) could not be read when last embedded and are left out (e.g. %s; see "
                    "failures.csv); fix them and restart `musetag label` to read them again", project.dir,
                    len(unreadable), unreadable[0])
        labels = {p: t for p, t in labels.items() if p not in set(unreadable)}
        if not labels:
            raise DatasetError(f"{project.dir}: every labelled file could not be read (see failures.csv)")
    groups = track_groups(project, sorted(labels), group_by)
    records = []
    for rel, tags in sorted(labels.items()):
        audio = (project.folder / rel).resolve()
        if project.task == "regression":
            values = parse_values(tags, project.tags)
            records.append(TrackRecord(id=rel, audio_path=audio, group=groups[rel], extra={"targets": values}))
        else:
            records.append(TrackRecord(id=rel, audio_path=audio, tags=tuple(tags), group=groups[rel]))
    return records


def export_manifest(project: Project, out: str | os.PathLike, *, seed: int = 0, fractions=FRACTIONS,
                    group_by: str | None = None) -> dict:
    """Write the manifest ``out`` (.csv); returns ``{"tracks", "groups", "splits"}``."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--export {out}: give a .csv file name for the manifest")
    records = labelled_records(project, group_by)
    split = seeded_split(records, fractions, seed=seed, stratify=project.task != "regression", group_disjoint=True)
    groups = {r.group for r in split}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    regression = project.task == "regression"
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "tags", "split", "group"] + (list(project.tags) if regression else []))
        for r in split:
            values = [repr(float(v)) for v in r.extra["targets"]] if regression else []
            writer.writerow([str(r.audio_path), TAG_SEP.join(r.tags), r.split, r.group] + values)
    os.replace(tmp, out)
    counts = {s: sum(1 for r in split if r.split == s) for s in ("train", "validation", "test")}
    result = {"tracks": len(split), "groups": len(groups), "splits": counts}
    empty = [s for s, n in counts.items() if not n]
    if empty:  # said with the counts (the page, the command), not only logged
        by = group_by or project.group_by
        result["note"] = (f"{' and '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty: {len(groups)} group(s) "
                          f"by {by}, and a group stays in one split; "
                          + ("label more tracks" if by == "file" else "label tracks of more groups, or export with "
                             "--group-by file (every track its own group)"))
        log.warning("%s: %s", out, result["note"])
    return result
