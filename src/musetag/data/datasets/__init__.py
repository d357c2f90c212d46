"""Corpus readers: each turns a corpus on disk into a list of :class:`TrackRecord` (a manifest).

A reader is registered with the ``[paths]`` and ``[options]`` keys it accepts, so a dataset config
with a misspelt key fails with the list of valid ones.
"""
from __future__ import annotations

import logging

from musetag.data.datasets.registry import READERS, ReaderSpec, register_reader  # noqa: F401 - public here too
from musetag.errors import DatasetError

log = logging.getLogger(__name__)


def load_records(config, *, check_vocab: bool = True) -> list:
    """Read the corpus a :class:`DatasetConfig` describes, split it if the reader gave no split,
    and validate it (unique ids, labels per task, tags inside the vocabulary file if one is set)."""
    return read_corpus(config, check_vocab=check_vocab)[0]


def read_corpus(config, *, check_vocab: bool = True) -> tuple[list, bool]:
    """:func:`load_records` and whether musetag split the tracks (by ``[split] fractions``: the corpus gave
    no split), for advice on an empty split."""
    from musetag.data.manifest import check_group_disjoint, check_unique_ids, seeded_split
    from musetag.data.tags import TagVocab

    spec = READERS[config.reader]
    records = spec.read(config)
    where = config.where
    if not records:
        raise DatasetError(f"{where}: the {config.reader} reader found no tracks; check [paths]")
    check_unique_ids(records, source=where)
    if config.task == "multiclass":
        for r in records:
            if len(r.tags) != 1:
                raise DatasetError(
                    f"{where}: track {r.id!r} has {len(r.tags)} labels {list(r.tags)} but task = "
                    "\"multiclass\" needs exactly one; use task = \"multilabel\" or fix the labels"
                )
    with_split = sum(r.split is not None for r in records)
    if with_split == 0:
        records = seeded_split(
            records, config.split_fractions, seed=config.split_seed,
            stratify=config.stratify, group_disjoint=config.group_disjoint,
        )
        if config.group_disjoint:
            check_group_disjoint(records, (("train", "test"), ("train", "validation"), ("validation", "test")), source=where)
    elif with_split != len(records):
        missing = [r.id for r in records if r.split is None]
        raise DatasetError(
            f"{where}: {len(missing)} track(s) have no split (e.g. {', '.join(missing[:5])}) while others do; "
            "give every track a split, or none to let musetag split them"
        )
    if check_vocab and config.tags_file is not None:
        vocab = TagVocab.from_file(config.tags_file)
        vocab.check_records(records, source=where)
    return records, with_split == 0


def dataset_vocab(config, records) -> "TagVocab":
    """The tag vocabulary: the config's tag file when set, otherwise every tag in the records, sorted."""
    from musetag.data.tags import TagVocab

    if config.task == "regression":  # the outputs are the target columns, in the TOML's order
        return TagVocab(config.targets)
    if config.tags_file is not None:
        return TagVocab.from_file(config.tags_file)
    return TagVocab.from_records(records, source=f"the labels of {config.source or config.name or 'the dataset'}")


# Register the built-in readers (import for side effects).
from musetag.data.datasets import csv_manifest, fma, gtzan, jamendo  # noqa: E402,F401
