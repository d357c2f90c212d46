"""Datasets: corpus readers -> manifest (TrackRecord) -> feature cache -> sampling -> tensors.

Batches from the torch datasets in :mod:`musetag.data.sampling` are dicts::

    x      FloatTensor (batch, C, n_mels, frames) for spectrograms, (batch, C, samples) for waveforms
    y      FloatTensor (batch, n_tags) multi-hot (multilabel) or LongTensor (batch,) class index
    index  LongTensor (batch,) position of the track in the dataset's record list
"""
from __future__ import annotations

from musetag.data.config import DatasetConfig, load_dataset_config
from musetag.data.datasets import READERS, dataset_vocab, load_records
from musetag.data.manifest import (
    SPLITS,
    TrackRecord,
    check_group_disjoint,
    read_manifest,
    seeded_split,
    split_records,
    write_manifest,
)
from musetag.data.tags import TagVocab, strip_prefix

__all__ = [
    "DatasetConfig", "load_dataset_config", "READERS", "load_records", "dataset_vocab", "SPLITS", "TrackRecord",
    "check_group_disjoint", "read_manifest", "write_manifest", "seeded_split", "split_records", "TagVocab",
    "strip_prefix",
]
