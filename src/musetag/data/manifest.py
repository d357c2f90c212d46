"""The one manifest type every reader produces (:class:`TrackRecord`), plus reading/writing a
manifest as CSV and the checks that apply to any manifest (unique ids, split names, groups kept
apart between splits)."""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

from musetag.errors import DatasetError

SPLITS = ("train", "validation", "test")

# Spellings users and datasets commonly use for the three splits.
_SPLIT_ALIASES = {
    "train": "train", "training": "train", "tr": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test", "eval": "test", "evaluation": "test",
}


def normalize_split(value: str | None, *, source: str = "") -> str | None:
    """Map ``training``/``valid``/``val``/... to ``train``/``validation``/``test``; empty -> None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text or text == "nan":
        return None
    try:
        return _SPLIT_ALIASES[text]
    except KeyError:
        where = f"{source}: " if source else ""
        raise DatasetError(
            f"{where}unknown split {value!r}; use one of train, validation, test "
            f"(aliases: {', '.join(sorted(_SPLIT_ALIASES))})"
        ) from None


@dataclass(frozen=True)
class TrackRecord:
    """One track of a corpus, whatever reader produced it.

    ``id`` is unique within a manifest; ``audio_path`` the decodable file (None when only
    precomputed features exist); ``feature_path`` a precomputed feature file (the official
    MTG-Jamendo ``.npy``), ``tags`` the labels (a single class for multiclass tasks), ``split``
    one of ``train``/``validation``/``test`` (or None before splitting), ``group`` the unit that must
    stay inside one split (artist), ``duration`` in seconds when known.
    """

    id: str
    audio_path: Path | None = None
    feature_path: Path | None = None
    tags: tuple[str, ...] = ()
    split: str | None = None
    group: str | None = None
    duration: float | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def with_split(self, split: str | None) -> "TrackRecord":
        return replace(self, split=split)

    def to_row(self) -> dict[str, str]:
        return {
            "id": self.id,
            "audio_path": "" if self.audio_path is None else str(self.audio_path),
            "feature_path": "" if self.feature_path is None else str(self.feature_path),
            "tags": ";".join(self.tags),
            "split": self.split or "",
            "group": self.group or "",
            "duration": "" if self.duration is None else repr(float(self.duration)),
        }

    @classmethod
    def from_row(cls, row: dict[str, str]) -> "TrackRecord":
        def _path(value: str | None) -> Path | None:
            return Path(value) if value else None

        duration = row.get("duration") or ""
        return cls(
            id=row["id"],
            audio_path=_path(row.get("audio_path")),
            feature_path=_path(row.get("feature_path")),
            tags=tuple(t for t in (row.get("tags") or "").split(";") if t),
            split=row.get("split") or None,
            group=row.get("group") or None,
            duration=float(duration) if duration else None,
        )


MANIFEST_COLUMNS = ("id", "audio_path", "feature_path", "tags", "split", "group", "duration")


def write_manifest(records: Iterable[TrackRecord], path: str | Path) -> Path:
    """Write records as a CSV (columns :data:`MANIFEST_COLUMNS`, tags joined with ``;``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow(record.to_row())
    return path


def read_manifest(path: str | Path) -> list[TrackRecord]:
    """Read a CSV written by :func:`write_manifest`."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"id", "tags"} - set(reader.fieldnames or ())
            if missing:
                raise DatasetError(
                    f"{path}: not a musetag manifest (missing columns {sorted(missing)}); "
                    f"expected {', '.join(MANIFEST_COLUMNS)}"
                )
            return [TrackRecord.from_row(row) for row in reader]
    except FileNotFoundError:
        raise DatasetError(f"{path}: manifest not found") from None


def check_unique_ids(records: Sequence[TrackRecord], *, source: str = "") -> None:
    seen: dict[str, int] = {}
    for i, record in enumerate(records):
        if record.id in seen:
            where = f"{source}: " if source else ""
            raise DatasetError(
                f"{where}track id {record.id!r} appears twice (tracks {seen[record.id] + 1} and {i + 1} of the list; in a "
                f"CSV manifest with a header: lines {seen[record.id] + 2} and {i + 2}); "
                "ids must be unique: remove the duplicate row if it lists the same file again, or give the "
                "rows distinct values in an 'id' column"
            )
        seen[record.id] = i


def split_records(records: Iterable[TrackRecord]) -> dict[str, list[TrackRecord]]:
    """Group records by split, in manifest order (keys: every split present; None for unsplit)."""
    out: dict[str, list[TrackRecord]] = defaultdict(list)
    for record in records:
        out[record.split].append(record)
    return dict(out)


def group_overlap(
    records: Iterable[TrackRecord], split_a: str = "train", split_b: str = "test"
) -> set[str]:
    """Groups (artists) that have tracks in both ``split_a`` and ``split_b``."""
    groups: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.group is not None and record.split is not None:
            groups[record.split].add(record.group)
    return groups.get(split_a, set()) & groups.get(split_b, set())


def check_group_disjoint(
    records: Sequence[TrackRecord],
    pairs: Sequence[tuple[str, str]] = (("train", "test"),),
    *,
    source: str = "",
) -> None:
    """Raise :class:`DatasetError` when a group (artist) has tracks in both splits of a pair."""
    for a, b in pairs:
        shared = group_overlap(records, a, b)
        if shared:
            where = f"{source}: " if source else ""
            sample = ", ".join(sorted(shared)[:5])
            raise DatasetError(
                f"{where}{len(shared)} group(s) (artists) have tracks in both {a} and {b} "
                f"(e.g. {sample}); results would be inflated by the artist effect. Use an "
                "artist-disjoint split (musetag's seeded split keeps each group in one split)"
            )


def seeded_split(
    records: Sequence[TrackRecord],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    seed: int = 0,
    stratify: bool = True,
    group_disjoint: bool = True,
) -> list[TrackRecord]:
    """Assign train/validation/test to every record, reproducibly from ``seed``.

    Stratified: each split gets about ``fractions`` of every tag's tracks (exact per-class counts
    for single-label data without groups, like scikit-learn's stratified split; a greedy
    iterative stratification otherwise). Group-aware: with ``group_disjoint`` every group (artist)
    lands in exactly one split. Returns new records in the input order.
    """
    import numpy as np

    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or abs(fractions.sum() - 1) > 1e-6:
        raise DatasetError(f"split fractions {list(fractions)} must be three non-negative numbers summing to 1")
    n = len(records)
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    tags = sorted({t for r in records for t in r.tags})
    tag_index = {t: i for i, t in enumerate(tags)}
    labels = np.zeros((n, max(len(tags), 1)), dtype=np.float64)
    for i, r in enumerate(records):
        for t in r.tags:
            labels[i, tag_index[t]] = 1.0
    if not stratify:
        labels = np.zeros((n, 1))
    has_groups = group_disjoint and any(r.group for r in records)
    single_label = all(len(r.tags) == 1 for r in records) or not stratify
    assignment = np.empty(n, dtype=np.int64)

    if single_label and not has_groups:
        # Exact proportional allocation per class (largest remainder), shuffled within class.
        klass = labels.argmax(axis=1) if stratify else np.zeros(n, dtype=np.int64)
        for k in np.unique(klass):
            members = np.flatnonzero(klass == k)
            members = members[rng.permutation(len(members))]
            counts = _allocate(len(members), fractions)
            start = 0
            for s, c in enumerate(counts):
                assignment[members[start:start + c]] = s
                start += c
    else:
        group_members: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            key = r.group if (has_groups and r.group) else f"\0track:{r.id}"
            group_members[key].append(i)
        keys = list(group_members)
        order = rng.permutation(len(keys))
        # Large groups first (least freedom later), random order among equals.
        order = sorted(order, key=lambda j: -len(group_members[keys[j]]))
        totals = labels.sum(axis=0)
        desired = fractions[:, None] * totals[None, :]
        desired_size = fractions * n
        have = np.zeros_like(desired)
        have_size = np.zeros(3)
        weight = 1.0 / np.maximum(totals, 1.0)
        for j in order:
            idx = group_members[keys[j]]
            counts = labels[idx].sum(axis=0)
            deficit = ((desired - have) * weight[None, :] * counts[None, :]).sum(axis=1)
            deficit += (desired_size - have_size) / n
            deficit[fractions == 0] = -np.inf
            best = np.flatnonzero(deficit >= deficit.max() - 1e-12)
            s = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
            assignment[idx] = s
            have[s] += counts
            have_size[s] += len(idx)
    return [r.with_split(SPLITS[s]) for r, s in zip(records, assignment)]


def _allocate(n: int, fractions) -> list[int]:
    """Split ``n`` items into integer counts proportional to ``fractions`` (largest remainder)."""
    import numpy as np

    raw = np.asarray(fractions) * n
    counts = np.floor(raw).astype(int)
    remainder = n - counts.sum()
    for i in np.argsort(-(raw - counts), kind="stable")[:remainder]:
        counts[i] += 1
    return counts.tolist()
