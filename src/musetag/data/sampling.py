"""Sampling schemes of the seeds, as torch Datasets and Samplers over a prepared feature cache.

Training
    :class:`RandomCropDataset`: one random excerpt of ``crop`` frames per track per epoch (Bour:
    128 or 224 frames; SELAB-HCMUS: 960 frames of the 96-band mels). The excerpt is a pure function
    of ``(seed, epoch, item)``, so a resumed run sees exactly the crops an uninterrupted one would,
    whatever the number of DataLoader workers.
    :class:`SegmentItemDataset`: every segment of every track is an example (SoundFusion: 5 s
    waveform segments with 25 % overlap, see :func:`overlap_segments`).
Evaluation
    :class:`SegmentDataset`: a track as a stack of segments, all consecutive ``N``-frame windows
    (Bour) or ``K`` evenly spaced ones (SELAB: 16); :func:`collate_segments` and
    :func:`aggregate_segments` average the outputs per track.
Labels and balance
    :func:`single_tag_relabel` (SELAB's multi-tag to single-tag "data balancing"),
    :class:`ClassAwareSampler` (draw a tag uniformly, then one of its tracks) and
    :func:`balanced_weights` (inverse tag frequency, for ``WeightedRandomSampler``).

Items are dicts ``{"x": FloatTensor (C, F, T) or (C, samples), "y": FloatTensor (n_tags,) multi-hot
or LongTensor () class index, "index": int}``; ``index`` is the track's position in the cache.
Tracks shorter than a window are padded (``pad_mode`` ``constant``: zeros after normalisation,
i.e. the dataset mean; ``wrap``: the track repeated).
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from musetag.data.cache import FeatureCache
from musetag.errors import ConfigError, DatasetError

PAD_MODES = ("constant", "wrap")
NORMALIZE = ("global", "band", None)


# ---------------------------------------------------------------------------------------- helpers
def crop_start(n_frames: int, crop: int, *, seed: int, epoch: int, item: int) -> int:
    """Start of the random crop of ``item`` in ``epoch``: uniform over the valid starts, drawn from
    ``numpy.random.default_rng([seed, epoch, item])`` (0 when the track is not longer than ``crop``)."""
    if n_frames <= crop:
        return 0
    return int(np.random.default_rng([int(seed), int(epoch), int(item)]).integers(0, n_frames - crop + 1))


def pad_to(x: np.ndarray, length: int, mode: str = "constant", value: float = 0.0) -> np.ndarray:
    """Pad the last axis of ``x`` to ``length`` (``constant`` value or ``wrap``: repeat the track)."""
    n = x.shape[-1]
    if n >= length:
        return x
    if mode == "wrap" and n > 0:
        reps = math.ceil(length / n)
        return np.concatenate([x] * reps, axis=-1)[..., :length]
    if mode not in PAD_MODES:
        raise ConfigError(f"pad_mode {mode!r}; use one of {', '.join(PAD_MODES)}")
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - n)], constant_values=value)


def segment_starts(n_frames: int, length: int, *, hop: int | None = None, n_segments: int | None = None) -> list[int]:
    """Window starts over a track of ``n_frames``.

    ``n_segments`` (K): K starts evenly spaced from 0 to ``n_frames - length`` (windows overlap
    when the track is shorter than K windows, leave gaps when longer; SELAB's 16). Otherwise every
    ``hop`` frames (default ``length``: consecutive windows), plus a last window that ends at the
    track's end when the regular ones miss its tail. A track not longer than ``length`` gives ``[0]``
    (the window is padded).
    """
    if length <= 0:
        raise ConfigError(f"segment length must be positive, got {length}")
    if n_frames <= length:
        return [0] if not n_segments else [0] * int(n_segments)
    last = n_frames - length
    if n_segments:
        return [int(round(v)) for v in np.linspace(0, last, int(n_segments))]
    hop = int(hop or length)
    if hop <= 0:
        raise ConfigError(f"segment hop must be positive, got {hop}")
    starts = list(range(0, last + 1, hop))
    if starts[-1] != last:
        starts.append(last)
    return starts


def overlap_segments(feature_config, seconds: float = 5.0, overlap: float = 0.25) -> tuple[int, int]:
    """(length, hop) in frames (or samples for waveforms) of ``seconds``-long segments overlapping by
    ``overlap`` (SoundFusion: 5 s, 25 %)."""
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
    length = int(round(seconds * feature_config.frames_per_second))
    hop = max(1, int(round(length * (1.0 - overlap))))
    return length, hop


def seconds_to_frames(seconds: float, feature_config) -> int:
    return int(round(seconds * feature_config.frames_per_second))


# ---------------------------------------------------------------------------------------- base
class _CacheDataset(Dataset):
    """Shared loading: the split's tracks, their targets and normalisation."""

    def __init__(self, cache: FeatureCache | str, split: str | Sequence[int] | None = "train", *,
                 normalize: str | None = "global", pad_mode: str = "constant"):
        self.cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        if isinstance(split, str) or split is None:
            self.tracks = self.cache.indices(split)
            if not self.tracks:
                raise DatasetError(f"{self.cache.path}: no tracks in split {split!r}")
        else:
            self.tracks = [int(i) for i in split]
        if normalize not in NORMALIZE:
            raise ConfigError(f"normalize {normalize!r}; use one of global, band, None")
        if pad_mode not in PAD_MODES:
            raise ConfigError(f"pad_mode {pad_mode!r}; use one of {', '.join(PAD_MODES)}")
        self.pad_mode = pad_mode
        self.kind = self.cache.index["features"]["kind"]
        self.task = self.cache.task
        self.targets = self.cache.targets(self.tracks)  # rows follow self.tracks
        self._target_tensors = torch.from_numpy(self.targets)
        stats = self.cache.stats
        self._mean = self._std = None
        if normalize == "global":
            self._mean, self._std = np.float32(stats["mean"]), np.float32(stats["std"])
        elif normalize == "band":
            if "band_mean" not in stats:
                raise ConfigError("per-band normalisation needs mel features; use normalize='global'")
            self._mean = np.asarray(stats["band_mean"], dtype=np.float32)[:, None]
            self._std = np.asarray(stats["band_std"], dtype=np.float32)[:, None]

    @property
    def n_classes(self) -> int:
        return len(self.cache.vocab)

    def frames(self, row: int) -> int:
        return self.cache.frames(self.tracks[row])

    def window(self, row: int, start: int, length: int | None) -> np.ndarray:
        """Frames ``[start, start + length)`` of the row's track: float32, channel axis first,
        normalised, padded to ``length``. Only those frames are read from the memory map."""
        array = self.cache.load(self.tracks[row])
        if self.kind == "mel" and array.ndim == 2:
            array = array[None]
        elif self.kind == "waveform" and array.ndim == 1:
            array = array[None]
        x = np.asarray(array[..., start:start + length] if length else array, dtype=np.float32)
        if self._mean is not None:
            x = (x - self._mean) / self._std
        if length and x.shape[-1] < length:  # only a track shorter than the window (start is 0)
            x = pad_to(x, length, self.pad_mode, 0.0)
        return np.ascontiguousarray(x)

    def target(self, row: int) -> torch.Tensor:
        return self._target_tensors[row].clone()


# ---------------------------------------------------------------------------------------- training
class RandomCropDataset(_CacheDataset):
    """One random excerpt of ``crop`` frames per track (item) per epoch; call :meth:`set_epoch`.

    ``relabel``: ``None`` or a :func:`single_tag_relabel` mode; items then are (track, one-hot tag)
    pairs. ``crop`` 0 returns whole tracks.
    """

    def __init__(self, cache, split="train", crop: int = 128, *, seed: int = 0, normalize="global",
                 pad_mode: str = "constant", relabel: str | None = None):
        super().__init__(cache, split, normalize=normalize, pad_mode=pad_mode)
        self.crop = int(crop)
        self.seed = int(seed)
        self.epoch = 0
        self.items = list(range(len(self.tracks)))
        self.item_targets = None
        if relabel:
            if self.task != "multilabel":
                raise ConfigError("single-tag relabelling applies to multi-label datasets only")
            self.items, self.item_targets = single_tag_relabel(self.targets, mode=relabel)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int) -> dict:
        row = self.items[item]
        start = crop_start(self.frames(row), self.crop, seed=self.seed, epoch=self.epoch, item=item) if self.crop else 0
        x = self.window(row, start, self.crop or None)
        y = torch.as_tensor(self.item_targets[item]) if self.item_targets is not None else self.target(row)
        return {"x": torch.from_numpy(x), "y": y, "index": self.tracks[row]}


class SegmentItemDataset(_CacheDataset):
    """Every window of every track is an item (training on all segments, SoundFusion)."""

    def __init__(self, cache, split="train", length: int = 0, hop: int | None = None, *, normalize="global",
                 pad_mode: str = "constant"):
        super().__init__(cache, split, normalize=normalize, pad_mode=pad_mode)
        if length <= 0:
            raise ConfigError("SegmentItemDataset needs a positive segment length")
        self.length = int(length)
        self.items = [(row, s) for row in range(len(self.tracks))
                      for s in segment_starts(self.frames(row), self.length, hop=hop)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: int) -> dict:
        row, start = self.items[item]
        return {"x": torch.from_numpy(self.window(row, start, self.length)), "y": self.target(row),
                "index": self.tracks[row]}


# ---------------------------------------------------------------------------------------- evaluation
class SegmentDataset(_CacheDataset):
    """A track as a stack of windows ``x: (S, C, F, length)`` for averaged evaluation.

    ``n_segments`` K: K evenly spaced windows (SELAB: 16); otherwise windows every ``hop`` frames
    (default ``length``: all consecutive ones, Bour). ``length`` 0: the whole track (S = 1).
    Use ``DataLoader(..., collate_fn=collate_segments)``.
    """

    def __init__(self, cache, split="validation", length: int = 128, *, hop: int | None = None,
                 n_segments: int | None = None, normalize="global", pad_mode: str = "constant"):
        super().__init__(cache, split, normalize=normalize, pad_mode=pad_mode)
        self.length = int(length)
        self.hop = hop
        self.n_segments = n_segments

    def __len__(self) -> int:
        return len(self.tracks)

    def starts(self, row: int) -> list[int]:
        if not self.length:
            return [0]
        return segment_starts(self.frames(row), self.length, hop=self.hop, n_segments=self.n_segments)

    def __getitem__(self, row: int) -> dict:
        if not self.length:
            x = self.window(row, 0, None)[None]
        else:
            x = np.stack([self.window(row, s, self.length) for s in self.starts(row)])
        return {"x": torch.from_numpy(x), "y": self.target(row), "index": self.tracks[row]}


def collate_segments(items: list[dict]) -> dict:
    """Concatenate per-track segment stacks: ``x (sum S, C, F, T)``, ``y (B, ...)``, ``index (B,)``
    and ``segments (B,)``, the number of rows of ``x`` that belong to each track."""
    return {
        "x": torch.cat([it["x"] for it in items]),
        "y": torch.stack([it["y"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
        "segments": torch.tensor([it["x"].shape[0] for it in items]),
    }


def aggregate_segments(outputs: torch.Tensor, segments: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Per-track mean (or max) of segment outputs ``(sum S, n)`` -> ``(B, n)``. Average probabilities,
    not logits, to follow the seeds (``outputs`` are whatever the caller passes)."""
    chunks = torch.split(outputs, [int(s) for s in segments])
    if how == "mean":
        return torch.stack([c.mean(dim=0) for c in chunks])
    if how == "max":
        return torch.stack([c.max(dim=0).values for c in chunks])
    raise ConfigError(f"segment aggregation {how!r}; use mean or max")


# ---------------------------------------------------------------------------------------- labels
def single_tag_relabel(targets: np.ndarray, mode: str = "duplicate", *, frequencies: np.ndarray | None = None):
    """SELAB-HCMUS "data balancing": multi-tag examples become single-tag ones.

    ``duplicate``: a track with k tags becomes k items, each with one of its tags (one-hot);
    ``rarest``: one item per track with its rarest tag (by ``frequencies``, default the counts in
    ``targets``). Tracks without tags keep an all-zero target. Returns (rows, one-hot targets).
    """
    targets = np.asarray(targets)
    if targets.ndim != 2:
        raise ConfigError("single_tag_relabel needs a multi-hot (n, n_tags) target matrix")
    freq = targets.sum(axis=0) if frequencies is None else np.asarray(frequencies)
    rows, out = [], []
    for i, row in enumerate(targets):
        on = np.flatnonzero(row > 0)
        if mode == "rarest" and on.size:
            on = on[[int(np.argmin(freq[on]))]]
        elif mode not in ("duplicate", "rarest"):
            raise ConfigError(f"relabel mode {mode!r}; use duplicate or rarest")
        for j in on if on.size else [None]:
            one = np.zeros(targets.shape[1], dtype=np.float32)
            if j is not None:
                one[j] = 1.0
            rows.append(i)
            out.append(one)
    return rows, np.stack(out)


def balanced_weights(targets: np.ndarray) -> np.ndarray:
    """Per-example sampling weight: mean inverse frequency of its tags (class index for multiclass),
    normalised to mean 1. Feed to ``torch.utils.data.WeightedRandomSampler``."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        counts = np.bincount(targets, minlength=int(targets.max()) + 1).astype(np.float64)
        w = 1.0 / counts[targets]
    else:
        inv = 1.0 / np.maximum(targets.sum(axis=0), 1.0)
        on = targets > 0
        w = np.where(on.any(axis=1), (on * inv).sum(axis=1) / np.maximum(on.sum(axis=1), 1), inv.min())
    return w / w.mean()


class ClassAwareSampler(Sampler):
    """Class-aware sampling for multi-label (or multiclass) data: each draw picks a tag uniformly,
    then a track carrying it uniformly, so rare tags are seen as often as frequent ones.
    Deterministic from ``(seed, epoch)``; call :meth:`set_epoch`."""

    def __init__(self, targets: np.ndarray, num_samples: int | None = None, *, seed: int = 0):
        targets = np.asarray(targets)
        if targets.ndim == 1:
            targets = np.eye(int(targets.max()) + 1, dtype=np.float32)[targets]
        self.members = [np.flatnonzero(targets[:, k] > 0) for k in range(targets.shape[1])]
        self.classes = np.array([k for k, m in enumerate(self.members) if m.size])
        if not self.classes.size:
            raise DatasetError("ClassAwareSampler: no positive example for any tag")
        self.num_samples = int(num_samples or targets.shape[0])
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, 104729])
        picks = rng.choice(self.classes, size=self.num_samples)
        for k in picks:
            members = self.members[k]
            yield int(members[rng.integers(members.size)])


class EpochShuffleSampler(Sampler):
    """A permutation per epoch from ``default_rng([seed, epoch])``; ``start`` skips the items an
    interrupted epoch already used (deterministic resume)."""

    def __init__(self, n: int, *, seed: int = 0):
        self.n, self.seed, self.epoch, self.start = int(n), int(seed), 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self) -> int:
        return max(0, self.n - self.start)

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        return iter(order[self.start:].tolist())
