"""Reading a prepared feature cache (:class:`FeatureCache`, :func:`open_cache`): its index, tags and
training-split statistics, and the arrays as memory maps (a bounded number open at once).
Written by :mod:`musetag.data.cache` (``musetag prepare``).
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from musetag.data.manifest import TrackRecord
from musetag.data.tags import TagVocab
from musetag.errors import DatasetError


class FeatureCache:
    """A prepared cache, opened read-only. Arrays are memory-mapped (``np.load(mmap_mode='r')``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().resolve()
        index_path = self.path / "index.json"
        if not index_path.is_file():
            hint = " (an interrupted run: run musetag prepare again to finish it)" if (self.path / "journal.jsonl").exists() else ""
            raise DatasetError(f"{self.path}: no index.json; not a finished feature cache{hint}. "
                               "Build it with: musetag prepare --data DATASET.toml --out CACHE_DIR")
        self.index = json.loads(index_path.read_text(encoding="utf-8"))
        self.tracks: list[dict[str, Any]] = self.index["tracks"]
        self.task: str = self.index["task"]
        self.vocab = TagVocab(self.index["tags"])
        self.stats: dict[str, Any] = self.index["stats"]
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()  # open memory maps, least recent first

    MAX_OPEN_MAPS = 256

    def __len__(self) -> int:
        return len(self.tracks)

    def __repr__(self) -> str:
        return f"FeatureCache({self.path}, {len(self)} tracks, {len(self.vocab)} tags, task={self.task})"

    @property
    def feature_config(self):
        """The FeatureConfig used, carrying the training split's global mean/std."""
        from musetag.features import FeatureConfig

        return FeatureConfig.from_dict(self.index["features"])

    @property
    def records(self) -> list[TrackRecord]:
        return [TrackRecord(id=t["id"], audio_path=Path(t["audio_path"]) if t.get("audio_path") else None,
                            feature_path=self.file(i), tags=tuple(t["tags"]), split=t["split"], group=t["group"],
                            duration=t["duration"]) for i, t in enumerate(self.tracks)]

    def file(self, i: int) -> Path:
        name = Path(self.tracks[i]["file"])
        return name if name.is_absolute() else self.path / name

    def indices(self, split: str | None = None) -> list[int]:
        """Positions of the tracks of ``split`` (all tracks when None)."""
        if split is None:
            return list(range(len(self.tracks)))
        found = [i for i, t in enumerate(self.tracks) if t["split"] == split]
        return found

    def frames(self, i: int) -> int:
        return int(self.tracks[i]["shape"][-1])

    def load(self, i: int, *, mmap: bool = True) -> np.ndarray:
        """Track ``i``'s array; memory-mapped (and the map kept open for the next call) by default."""
        if mmap and i in self._maps:
            self._maps.move_to_end(i)
            return self._maps[i]
        path = self.file(i)
        try:
            array = np.load(path, mmap_mode="r" if mmap else None)
            if mmap:
                self._maps[i] = array
                if len(self._maps) > self.MAX_OPEN_MAPS:
                    self._maps.popitem(last=False)
            return array
        except FileNotFoundError:
            raise DatasetError(f"{path}: cached features missing; run musetag prepare again to rebuild") from None
        except ValueError as exc:
            raise DatasetError(f"{path}: unreadable cached features ({exc}); delete it and run musetag prepare again") from None

    def targets(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Targets in index order: multi-hot (n, n_tags) float32 or class indices (n,) int64."""
        indices = range(len(self.tracks)) if indices is None else indices
        if self.task == "multiclass":
            return np.array([self.vocab.encode_class(self.tracks[i]["tags"]) for i in indices], dtype=np.int64)
        return self.vocab.encode_many(self.tracks[i]["tags"] for i in indices)


def open_cache(path: str | Path) -> FeatureCache:
    return FeatureCache(path)
