"""Datasets: corpus readers -> manifest (TrackRecord) -> feature cache.

The torch datasets and samplers that turn a cache into batches are training's
(:mod:`musetag.training.data`: ``CropDataset``, ``EpochSampler``, ``collate``).
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


def __getattr__(name: str):
    # torch-dependent parts load on first use, so reading manifests stays light
    lazy = {"FeatureCache": "cache", "prepare": "cache", "build_cache": "cache", "open_cache": "cache",
            "make_corpus": "synth"}
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(f"musetag.data.{lazy[name]}"), name)
    raise AttributeError(f"module 'musetag.data' has no attribute {name!r}")

__all__ = [
    "DatasetConfig", "load_dataset_config", "READERS", "load_records", "dataset_vocab", "SPLITS", "TrackRecord",
    "check_group_disjoint", "read_manifest", "write_manifest", "seeded_split", "split_records", "TagVocab",
    "strip_prefix", "FeatureCache", "prepare", "build_cache", "open_cache", "make_corpus",
]
