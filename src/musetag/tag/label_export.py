"""Export a labelling project (``musetag label PROJECT_DIR --export OUT.csv``): a CSV manifest.

Columns ``path,tags,split,group`` (the format :mod:`musetag.data.datasets.csv_manifest` reads, so
``reader = "csv"`` + ``musetag prepare`` / ``train`` take it as is): every labelled track of the
project with its latest label (``tags`` ``;``-joined; empty: none of the tags), its absolute path,
its group (the file's parent folder) and a seeded train/validation/test split that keeps every
group inside one split (:func:`musetag.data.manifest.seeded_split`).
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from musetag.data.manifest import TrackRecord, seeded_split
from musetag.errors import ConfigError, DatasetError
from musetag.tag.label_project import Project
from musetag.tag.label_store import TAG_SEP, LabelStore

log = logging.getLogger(__name__)
FRACTIONS = (0.7, 0.15, 0.15)


def export_manifest(project: Project, out: str | os.PathLike, *, seed: int = 0, fractions=FRACTIONS) -> dict:
    """Write the manifest ``out`` (.csv); returns ``{"tracks", "groups", "splits"}``."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--export {out}: give a .csv file name for the manifest")
    labels = LabelStore(project.labels_path).state()
    if not labels:
        raise DatasetError(f"{project.dir}: no labels yet; label some tracks on the page first")
    records = []
    for rel, tags in sorted(labels.items()):
        audio = (project.folder / rel).resolve()
        records.append(TrackRecord(id=rel, audio_path=audio, tags=tuple(tags), group=os.path.dirname(rel) or "."))
    split = seeded_split(records, fractions, seed=seed, stratify=True, group_disjoint=True)
    groups = {r.group for r in split}
    if len(groups) < 3:
        log.warning("%s: only %d group(s) (parent folders): the splits cannot all be filled while keeping "
                    "each group in one split", out, len(groups))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "tags", "split", "group"])
        for r in split:
            writer.writerow([str(r.audio_path), TAG_SEP.join(r.tags), r.split, r.group])
    os.replace(tmp, out)
    counts = {s: sum(1 for r in split if r.split == s) for s in ("train", "validation", "test")}
    return {"tracks": len(split), "groups": len(groups), "splits": counts}
