"""From a dataset config to the tensors a training run consumes.

:func:`load_training_data` reads the dataset config (``musetag.data``), resolves the feature
configuration (the recipe's ``[features]`` over the dataset's preset), prepares or reuses the
feature cache, computes the normalisation statistics on the training split, and returns a
:class:`TrainingData` whose splits keep the dataset's row order (so ``predictions/*.npy`` rows
match the dataset's rows).

Batches are a pure function of ``(seed, epoch)``: :class:`EpochSampler` draws the epoch's order
and every item's crop seed from ``numpy.random.default_rng([seed, epoch])``, shards it across DDP
ranks and can start part-way through an epoch (resume). :class:`CropDataset` cuts the excerpt from
that seed, so results do not depend on DataLoader workers.

Item shapes: spectrograms ``(channels, n_mels, frames)``, waveforms ``(channels, samples)``.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from musetag.data.store import dataset_cache_dir, default_store
from musetag.errors import ConfigError, DatasetError
from musetag.inference.segments import segment_starts

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    name: str
    ids: list[str]
    paths: list[Path]
    targets: np.ndarray  # (n, n_tags) float32 multi-hot or regression values, or (n,) int64 class indices
    lengths: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class TrainingData:
    task: str
    tags: list[str]
    feature_config: Any  # musetag.features.FeatureConfig with mean/std
    splits: dict[str, SplitData]
    cache_dir: Path
    dataset_name: str = ""
    normalize: bool = True
    _maps: dict = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return self.feature_config.kind

    @property
    def in_channels(self) -> int:
        """Channels of the cached features (a mono file under a stereo preset gives 1)."""
        if getattr(self, "_channels", None) is None:
            split = self.splits["train"]
            self._channels = int(self.load("train", 0).shape[0]) if len(split) else self.feature_config.channels
        return self._channels

    @property
    def n_classes(self) -> int:
        return len(self.tags)

    def _array(self, split: str, index: int) -> np.ndarray:
        """Track ``index`` of ``split`` as stored (a memory map, kept open: reopening a file per item is
        5-10x slower)."""
        path = self.splits[split].paths[index]
        try:
            x = self._maps.get(path)
            if x is None:
                x = self._maps[path] = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cached features {path} cannot be read ({exc}); delete the cache folder "
                               f"{self.cache_dir} and run again") from None
        return x

    def length(self, split: str, index: int) -> int:
        """Frames (or samples) of track ``index`` of ``split``, read from the file's header only."""
        return int(self._array(split, index).shape[-1])

    def load(self, split: str, index: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Track ``index`` of ``split`` as float32 ``(C, F, T)`` / ``(C, S)``, normalised; ``start``/``stop``
        select frames (samples) on the last axis, and only those are read from the memory map."""
        x = self._array(split, index)
        if start or stop is not None:
            x = x[..., start:stop]
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "mel":
            if x.ndim == 2:
                x = x[None]
        elif x.ndim == 1:
            x = x[None]
        if self.normalize and self.feature_config.mean is not None:
            mean = np.asarray(self.feature_config.mean, dtype=np.float32)
            std = np.asarray(self.feature_config.std, dtype=np.float32)
            if self.kind == "mel" and mean.ndim == 1 and mean.size > 1:
                mean, std = mean[:, None], std[:, None]
            x = (x - mean) / std
        return np.ascontiguousarray(x, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# feature configuration and cache


def resolve_feature_config(features: dict, dataset_config=None):
    """The recipe's ``[features]`` table (``preset`` + FeatureConfig fields) over the dataset's."""
    from musetag.features.presets import FeatureConfig, get_preset

    features = dict(features or {})
    preset = features.pop("preset", None)
    if preset:
        base = get_preset(preset).to_dict()
    elif dataset_config is not None:
        base = dataset_config.feature_config().to_dict()
    else:
        raise ConfigError("features: no preset; set features.preset (e.g. 'jamendo96') or give a dataset config")
    known = set(base)
    unknown = sorted(set(features) - known)
    if unknown:
        raise ConfigError(f"unknown features key(s) {unknown}; valid keys: preset, {', '.join(sorted(known))}")
    base.update(features)
    base["mean"] = None
    base["std"] = None
    return FeatureConfig.from_dict(base)


def default_cache_dir(dataset_config, feature_config, run_dir: Path | None) -> Path:
    """The dataset's cache folder: the same one ``musetag prepare`` fills (:func:`musetag.data.store.dataset_cache_dir`)."""
    return dataset_cache_dir(dataset_config, feature_config, run_dir if run_dir is not None else Path("."))


def prepare_cache(records, feature_config, cache_dir: Path, *, progress: bool = True,
                  store: Path | None = None) -> dict[str, Path]:
    """Feature file for every record (computed once, then reused): ``{track id: .npy path}``, in the data
    package's feature cache (the one ``musetag prepare`` fills: :func:`musetag.data.cache.training_cache`)."""
    from musetag.data.cache import training_cache

    try:
        return training_cache(records, feature_config, cache_dir, progress=progress, store=store)
    except DatasetError as exc:
        if "different settings" not in str(exc):
            raise
        raise DatasetError(f"{exc}. For `musetag train`: delete {cache_dir} to rebuild it, or set "
                           "data.cache_dir to another folder") from None


# ---------------------------------------------------------------------------------------------
# loading


def load_training_data(cfg, run_dir: Path | None = None, *, progress: bool = True, prepare: bool = True) -> TrainingData:
    """Records, vocabulary, cached features and normalisation for ``cfg`` (a TrainConfig)."""
    from musetag.data import load_dataset_config
    from musetag.data.datasets import dataset_vocab, load_records

    if not cfg.data.dataset:
        raise ConfigError("no dataset: pass --data DATASET.toml (or set data.dataset in the recipe)")
    ds = load_dataset_config(cfg.data.dataset)
    feature_config = resolve_feature_config(cfg.features, ds)
    records = load_records(ds)
    vocab = dataset_vocab(ds, records)
    tags = vocab.to_list()
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir(ds, feature_config, run_dir)
    if not prepare and not cache_dir.exists():
        raise DatasetError(f"feature cache {cache_dir} does not exist yet")
    try:
        paths = prepare_cache(records, feature_config, cache_dir, progress=progress, store=default_store(ds, cache_dir))
    except ConfigError as exc:  # the preset (a layer the backbone lacks), found on the first file: not the cache
        raise ConfigError(f"{ds.where}: {exc.__cause__ or exc}; fix the embedding preset (the dataset TOML's preset "
                          "or the recipe's [features]) and run the command again") from None

    splits: dict[str, SplitData] = {}
    wanted = {"train": cfg.data.train_split, "validation": cfg.data.validation_split, "test": cfg.data.test_split}
    for role, split_name in wanted.items():
        chosen = [r for r in records if r.split == split_name]
        if not chosen and role != "test":
            raise DatasetError(f"{ds.where}: no tracks in split {split_name!r}; "
                               f"the dataset has {sorted({str(r.split) for r in records})}: give some tracks "
                               f"split = {split_name!r} in the manifest, or leave the split column out for a "
                               "seeded split (probe-auto needs no validation split: it cross-validates on "
                               "train+validation)")
        if ds.task == "multiclass":
            targets = np.array([vocab.encode_class(r.tags) for r in chosen], dtype=np.int64)
        elif ds.task == "regression":  # (n, targets) float32: the manifest's numeric columns
            targets = np.array([r.extra["targets"] for r in chosen], dtype=np.float32).reshape(len(chosen), len(tags))
        else:
            targets = (vocab.encode_many([r.tags for r in chosen]).astype(np.float32)
                       if chosen else np.zeros((0, len(tags)), np.float32))
        splits[role] = SplitData(role, [r.id for r in chosen], [paths[r.id] for r in chosen], targets)

    if cfg.data.label_mode == "single" and ds.task == "multilabel":
        splits["train"] = _single_label(splits["train"])

    data = TrainingData(ds.task, tags, feature_config, splits, cache_dir, dataset_name=ds.name or "",
                        normalize=False)
    if cfg.data.normalize:
        mean, std = _train_stats(data, cache_dir)
        data.feature_config = feature_config.with_stats(mean, std)
        data.normalize = True
    return data


def warn_unlearnable(data: TrainingData) -> list[str]:
    """Log (and return) the outputs the training split cannot teach: a tag without a positive (or without a
    negative) training track, a class without a training track, a regression target with one value on
    every training track. They are still trained and scored; the warning names them and the fix."""
    train = data.splits.get("train")
    if train is None or not len(train):
        return []
    y = np.asarray(train.targets)
    if data.task == "multiclass":
        bad = [t for k, t in enumerate(data.tags) if not (y == k).any()]
        what = ("classes have no track in the train split, so the model cannot learn them", "give each some "
                "training tracks (label more, or move some into the train split)")
    elif data.task == "regression":
        bad = [t for k, t in enumerate(data.tags) if np.ptp(y[:, k]) == 0]
        what = ("targets have the same value on every track of the train split, so the model cannot learn them",
                "check the targets = [...] columns of the dataset TOML and the manifest")
    else:
        bad = [t for k, t in enumerate(data.tags) if not y[:, k].any() or y[:, k].all()]
        what = ("tags have no positive (or no negative) track in the train split, so the model cannot learn them",
                "give each some training examples (label more tracks, or move some into the train split)")
    if bad:
        from musetag.errors import shortlist

        log.warning("%d of %d %s: %s; %s", len(bad), len(data.tags), what[0], shortlist(bad), what[1])
    return bad


def _single_label(split: SplitData) -> SplitData:
    """SELAB-HCMUS 'data balancing': a track with k tags becomes k examples with one tag each."""
    ids, paths, rows = [], [], []
    for i in range(len(split)):
        on = np.flatnonzero(split.targets[i] > 0)
        for j in on if on.size else [None]:
            row = np.zeros_like(split.targets[i])
            if j is not None:
                row[j] = 1.0
            ids.append(split.ids[i])
            paths.append(split.paths[i])
            rows.append(row)
    return SplitData(split.name, ids, paths, np.stack(rows).astype(np.float32))


def _train_stats(data: TrainingData, cache_dir: Path) -> tuple[float, float]:
    """Global mean/std of the training features (cached in ``stats-<hash>.json``)."""
    from musetag.features.compute import compute_stats

    train = data.splits["train"]
    key = hashlib.sha1("\n".join(sorted(set(train.ids))).encode()).hexdigest()[:12]
    stats_path = Path(cache_dir) / f"stats-train-{key}.json"
    if stats_path.exists():
        d = json.loads(stats_path.read_text())
        return d["mean"], d["std"]
    unique = list(dict.fromkeys(train.paths))
    mean, std = compute_stats(np.load(p) for p in unique)
    try:
        stats_path.write_text(json.dumps({"mean": mean, "std": std, "tracks": len(unique)}))
    except OSError:
        pass
    return mean, std


# ---------------------------------------------------------------------------------------------
# torch datasets and the deterministic sampler


class EpochSampler(Sampler):
    """Yields ``(track index, crop seed)`` for one epoch: a permutation drawn from
    ``default_rng([seed, epoch])``, this rank's shard of it, from position ``start`` on.

    ``min_samples`` larger than ``n`` makes the epoch ``min_samples`` items long: whole passes, each a
    new permutation with new crop seeds, the last one cut short (``data.min_epoch_samples``: a tiny
    training set still gets optimiser steps, not one batch, per epoch). The first pass is the order
    an epoch has without it."""

    def __init__(self, n: int, *, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 min_samples: int = 0) -> None:
        self.n = int(n)
        self.length = max(self.n, int(min_samples)) if self.n else 0
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = int(epoch)
        self.start = int(start)

    def order(self) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch, 7919])
        items: list[tuple[int, int]] = []
        while len(items) < self.length:
            perm = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            crop_seeds = rng.integers(0, 2**62, size=self.n)
            items.extend((int(i), int(s)) for i, s in zip(perm, crop_seeds))
        items = items[:self.length]
        if self.world_size > 1:
            total = -(-self.length // self.world_size) * self.world_size
            items = (items + items[: total - self.length])[self.rank:total:self.world_size]
        return items

    def __iter__(self):
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        per_rank = -(-self.length // self.world_size)
        return max(0, per_rank - self.start)


class CropDataset(Dataset):
    """Training items: a random excerpt of ``crop`` frames/samples (0: the whole track)."""

    def __init__(self, data: TrainingData, split: str, crop: int) -> None:
        self.data = data
        self.split = split
        self.crop = int(crop)
        self.targets = data.splits[split].targets

    def __len__(self) -> int:
        return len(self.data.splits[self.split])

    def __getitem__(self, key):
        index, crop_seed = key
        length = self.data.length(self.split, index)
        if self.crop and length > self.crop:  # only the excerpt's frames are read and normalised
            start = int(np.random.default_rng(crop_seed).integers(0, length - self.crop + 1))
            x = self.data.load(self.split, index, start, start + self.crop)
        else:
            x = self.data.load(self.split, index)
        if self.crop and length < self.crop:
            pad = [(0, 0)] * (x.ndim - 1) + [(0, self.crop - length)]
            x = np.pad(x, pad)
        y = torch.as_tensor(self.targets[index])
        x = np.ascontiguousarray(x)
        if not x.flags.writeable:  # an excerpt of a memory-mapped waveform is a read-only view: own it
            x = x.copy()
        return {"x": torch.from_numpy(x), "y": y, "index": index}


def collate(items: list[dict]) -> dict:
    """Stack items, zero-padding the last axis to the longest (whole-track training)."""
    length = max(it["x"].shape[-1] for it in items)
    xs = []
    for it in items:
        x = it["x"]
        if x.shape[-1] < length:
            x = torch.nn.functional.pad(x, (0, length - x.shape[-1]))
        xs.append(x)
    return {"x": torch.stack(xs), "y": torch.stack([it["y"] for it in items]),
            "index": torch.tensor([it["index"] for it in items])}


def segments(x: np.ndarray, crop: int, hop: int, max_segments: int = 0) -> np.ndarray:
    """Cut a track ``(C, F, T)`` / ``(C, S)`` into ``(n, C, F, crop)`` windows (see
    :func:`musetag.inference.segments.segment_starts`; short windows are zero-padded). ``crop`` 0: the whole track."""
    if crop <= 0:
        return x[None]
    out = []
    for start in segment_starts(x.shape[-1], crop, hop or crop, max_segments):
        seg = x[..., start:start + crop]
        if seg.shape[-1] < crop:
            seg = np.pad(seg, [(0, 0)] * (seg.ndim - 1) + [(0, crop - seg.shape[-1])])
        out.append(seg)
    return np.stack(out)
