"""The tag vocabulary: an ordered list of tag names with multi-hot / class-index encoding."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from musetag.errors import DatasetError
from musetag.textfiles import read_text

PREFIX_SEPARATOR = "---"


def strip_prefix(tag: str) -> str:
    """``mood/theme---happy`` -> ``happy`` (MTG-Jamendo's category prefix); other tags unchanged."""
    return tag.split(PREFIX_SEPARATOR, 1)[1] if PREFIX_SEPARATOR in tag else tag


class TagVocab:
    """Ordered tags. Column ``i`` of every target/prediction matrix is ``vocab.tags[i]``."""

    def __init__(self, tags: Iterable[str], *, source: str | Path | None = None):
        """``source``: where the tags come from (a file, a dataset), named in errors."""
        self.tags: tuple[str, ...] = tuple(tags)
        where = f"{source}: " if source else ""
        if not self.tags:
            raise DatasetError(f"{where}empty tag vocabulary: the dataset has no tags; fill in the manifest's tags "
                               "column (`;`-separated names; an empty cell is a track with none of the tags), or "
                               "for numeric labels set task = \"regression\" and targets = [...]")
        commas = [t for t in self.tags if "," in t]
        if commas:
            raise DatasetError(
                f"{where}tag {commas[0]!r} contains a comma, and commas separate tags wherever tags are named "
                "(`musetag similar --tags a,b`), so it could never be asked for; rename it in the labels "
                "(e.g. 'rock/pop')"
            )
        self._index = {tag: i for i, tag in enumerate(self.tags)}
        if len(self._index) != len(self.tags):
            dup = [t for t, n in Counter(self.tags).items() if n > 1]
            raise DatasetError(f"duplicate tags in vocabulary: {dup}")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_records(cls, records, *, sort: bool = True, min_count: int = 1,
                     source: str | Path | None = None) -> "TagVocab":
        """Tags seen in ``records`` (sorted alphabetically, like MTG-Jamendo's official order)."""
        counts = Counter(tag for record in records for tag in record.tags)
        tags = [t for t, n in counts.items() if n >= min_count]
        return cls(sorted(tags) if sort else tags, source=source)

    @classmethod
    def from_file(cls, path: str | Path, *, strip: bool = True) -> "TagVocab":
        """One tag per line (blank lines ignored); category prefixes removed when ``strip``."""
        path = Path(path)
        try:
            lines = read_text(path, "tag list").splitlines()
        except FileNotFoundError:
            raise DatasetError(f"{path}: tag list not found") from None
        tags = [line.strip() for line in lines if line.strip()]
        return cls((strip_prefix(t) for t in tags) if strip else tags, source=path)

    # -- queries ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tags)

    def __iter__(self):
        return iter(self.tags)

    def __contains__(self, tag: object) -> bool:
        return tag in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TagVocab) and self.tags == other.tags

    def __repr__(self) -> str:
        return f"TagVocab({len(self.tags)} tags: {', '.join(self.tags[:6])}{', ...' if len(self) > 6 else ''})"

    def index(self, tag: str) -> int:
        try:
            return self._index[tag]
        except KeyError:
            raise DatasetError(
                f"unknown tag {tag!r}; the vocabulary has {len(self)} tags ({', '.join(self.tags[:10])}"
                f"{', ...' if len(self) > 10 else ''})"
            ) from None

    def to_list(self) -> list[str]:
        return list(self.tags)

    # -- encoding -----------------------------------------------------------------------------
    def encode(self, tags: Sequence[str]) -> np.ndarray:
        """Multi-hot float32 vector of length ``len(self)``."""
        out = np.zeros(len(self.tags), dtype=np.float32)
        for tag in tags:
            out[self.index(tag)] = 1.0
        return out

    def encode_many(self, tag_lists: Iterable[Sequence[str]]) -> np.ndarray:
        rows = [self.encode(tags) for tags in tag_lists]
        return np.stack(rows) if rows else np.zeros((0, len(self.tags)), dtype=np.float32)

    def encode_class(self, tags: Sequence[str]) -> int:
        """Class index for a multiclass task (exactly one tag expected)."""
        if len(tags) != 1:
            raise DatasetError(
                f"a multiclass track needs exactly one label, found {len(tags)} ({list(tags)}); "
                "set task = \"multilabel\" in the dataset config or fix the labels"
            )
        return self.index(tags[0])

    def decode(self, vector: Sequence[float], threshold: float | Sequence[float] = 0.5) -> list[str]:
        """Tags whose score is above ``threshold`` (scalar or one per tag; ``score > threshold``, the
        MediaEval decision rule, as :attr:`musetag.inference.result.TagResult.decisions`)."""
        scores = np.asarray(vector, dtype=np.float64)
        if scores.shape != (len(self.tags),):
            raise DatasetError(f"expected {len(self.tags)} scores, got shape {scores.shape}")
        thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), scores.shape)
        return [tag for tag, s, t in zip(self.tags, scores, thr) if s > t]

    def counts(self, records) -> np.ndarray:
        """Number of records carrying each tag (positives per column)."""
        out = np.zeros(len(self.tags), dtype=np.int64)
        for record in records:
            for tag in record.tags:
                if tag in self._index:
                    out[self._index[tag]] += 1
        return out

    def check_records(self, records, *, source: str = "") -> None:
        """Raise a clear error when a record carries a tag outside the vocabulary."""
        for record in records:
            for tag in record.tags:
                if tag not in self._index:
                    where = f"{source}: " if source else ""
                    raise DatasetError(
                        f"{where}track {record.id!r} has tag {tag!r}, which is not in the vocabulary "
                        f"({len(self)} tags: {', '.join(self.tags[:10])}{', ...' if len(self) > 10 else ''}); "
                        "add it to the tag list or fix the label"
                    )
