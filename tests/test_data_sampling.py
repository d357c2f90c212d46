"""Sampling schemes on a small cache whose arrays encode their own frame index (known answers)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from musetag.data import TrackRecord
from musetag.data.cache import FeatureCache, build_cache
from musetag.data.sampling import (
    ClassAwareSampler,
    EpochShuffleSampler,
    RandomCropDataset,
    SegmentDataset,
    SegmentItemDataset,
    aggregate_segments,
    balanced_weights,
    collate_segments,
    crop_start,
    overlap_segments,
    segment_starts,
    single_tag_relabel,
)
from musetag.features import get_preset

LENGTHS = [1000, 400, 50, 960, 700, 300]
TAGS = [("calm",), ("calm", "dark"), ("happy",), ("calm",), ("dark", "happy"), ("calm",)]
SPLITS = ["train", "train", "train", "train", "validation", "test"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> FeatureCache:
    root = tmp_path_factory.mktemp("cache")
    records = []
    for i, (n, tags, split) in enumerate(zip(LENGTHS, TAGS, SPLITS)):
        # value = 1000 * track + frame index, identical in every band: crops reveal their position
        x = np.tile(np.arange(n, dtype=np.float32) + 1000 * i, (96, 1))
        path = root / "mel" / f"{i}.npy"
        path.parent.mkdir(exist_ok=True)
        np.save(path, x)
        records.append(TrackRecord(id=f"t{i}", feature_path=path, tags=tags, split=split))
    build_cache(records, get_preset("jamendo96"), root / "cache", progress=False, workers=0)
    return FeatureCache(root / "cache")


def _raw(dataset, x):
    return x * dataset._std + dataset._mean


def test_random_crops_reproducible_per_epoch_and_worker_independent(cache):
    ds = RandomCropDataset(cache, "train", crop=128, seed=7)
    assert len(ds) == 4 and ds.n_classes == 3
    first = [ds[i]["x"] for i in range(4)]
    assert first[0].shape == (1, 96, 128) and first[0].dtype == torch.float32
    again = [ds[i]["x"] for i in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["x"], first[0])
    # the crop is a contiguous excerpt at the documented start
    raw = _raw(ds, ds[0]["x"].numpy())[0, 0]
    start = crop_start(1000, 128, seed=7, epoch=1, item=0)
    np.testing.assert_allclose(raw, np.arange(start, start + 128), atol=0.05)
    # DataLoader workers change nothing
    ds.set_epoch(3)
    serial = torch.cat([b["x"] for b in DataLoader(ds, batch_size=2)])
    parallel = torch.cat([b["x"] for b in DataLoader(ds, batch_size=2, num_workers=2)])
    assert torch.equal(serial, parallel)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["x"].shape == (4, 1, 96, 128) and batch["y"].shape == (4, 3)
    assert batch["index"].tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(batch["y"][1].numpy(), [1, 1, 0])  # calm, dark


def test_crop_starts_cover_the_track_uniformly():
    starts = [crop_start(300, 100, seed=0, epoch=e, item=5) for e in range(4000)]
    assert min(starts) == 0 and max(starts) == 200
    assert abs(np.mean(starts) - 100) < 5


def test_short_tracks_are_padded(cache):
    ds = RandomCropDataset(cache, "train", crop=128, normalize=None)
    x = ds[2]["x"].numpy()[0, 0]  # track 2 has 50 frames
    np.testing.assert_array_equal(x[:50], np.arange(50) + 2000)
    np.testing.assert_array_equal(x[50:], 0)
    wrap = RandomCropDataset(cache, "train", crop=128, normalize=None, pad_mode="wrap")[2]["x"].numpy()[0, 0]
    np.testing.assert_array_equal(wrap, (np.arange(128) % 50) + 2000)


def test_segment_starts():
    assert segment_starts(300, 128) == [0, 128, 172]  # consecutive, last one aligned to the end
    assert segment_starts(256, 128) == [0, 128]
    assert segment_starts(100, 128) == [0]
    assert segment_starts(1000, 100, hop=75)[:3] == [0, 75, 150]
    sixteen = segment_starts(4000, 960, n_segments=16)
    assert len(sixteen) == 16 and sixteen[0] == 0 and sixteen[-1] == 3040
    assert np.all(np.diff(sixteen) > 0)


def test_segment_dataset_and_aggregation(cache):
    ds = SegmentDataset(cache, "train", length=128)
    item = ds[0]
    assert item["x"].shape == (len(segment_starts(1000, 128)), 1, 96, 128)
    loader = DataLoader(ds, batch_size=3, collate_fn=collate_segments)
    batch = next(iter(loader))
    assert batch["segments"].tolist() == [8, 4, 1]
    assert batch["x"].shape[0] == 13
    scores = torch.arange(13, dtype=torch.float32)[:, None].repeat(1, 3)
    agg = aggregate_segments(scores, batch["segments"])
    np.testing.assert_allclose(agg[:, 0].numpy(), [3.5, 9.5, 12])
    selab = SegmentDataset(cache, "train", length=96, n_segments=16)
    assert selab[0]["x"].shape == (16, 1, 96, 96)


def test_waveform_overlap_segments(cache):
    length, hop = overlap_segments(get_preset("waveform22k"), seconds=5.0, overlap=0.25)
    assert (length, hop) == (110250, 82688)
    mel_len, mel_hop = overlap_segments(get_preset("fusion64"), 5.0, 0.25)
    assert mel_len == round(5 * 44100 / 512) and mel_hop == round(mel_len * 0.75)
    items = SegmentItemDataset(cache, "train", length=400, hop=300)
    assert len(items) == 3 + 1 + 1 + 3  # 1000 -> 0,300,600; 400 -> 0; 50 -> padded; 960 -> 0,300 + tail 560
    assert items[0]["x"].shape == (1, 96, 400)


def test_single_tag_relabel_and_dataset_option(cache):
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float32)
    rows, one_hot = single_tag_relabel(targets)
    assert rows == [0, 1, 1, 2, 3]
    np.testing.assert_array_equal(one_hot, [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    rows, one_hot = single_tag_relabel(targets, mode="rarest")
    assert rows == [0, 1, 2, 3] and one_hot[1].tolist() == [0, 1, 0]
    ds = RandomCropDataset(cache, "train", crop=64, relabel="duplicate")
    assert len(ds) == 5 and all(float(ds[i]["y"].sum()) == 1 for i in range(5))
    assert [ds[i]["index"] for i in range(5)] == [0, 1, 1, 2, 3]


def test_class_aware_sampler_balances_tags():
    targets = np.zeros((1000, 3), dtype=np.float32)
    targets[:900, 0] = 1
    targets[900:990, 1] = 1
    targets[990:, 2] = 1
    sampler = ClassAwareSampler(targets, num_samples=3000, seed=1)
    drawn = np.array(list(sampler))
    share_rare = np.mean(drawn >= 990)
    assert 0.28 < share_rare < 0.39
    assert list(sampler) == drawn.tolist()
    sampler.set_epoch(1)
    assert list(sampler) != drawn.tolist()
    w = balanced_weights(targets)
    assert w[995] > 50 * w[0] and w.mean() == pytest.approx(1.0)
    wc = balanced_weights(np.array([0, 0, 0, 1]))
    assert wc[3] == pytest.approx(3 * wc[0])


def test_epoch_shuffle_sampler_resumes_mid_epoch():
    sampler = EpochShuffleSampler(10, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start=4)
    assert list(sampler) == full[4:]
    assert sorted(full) == list(range(10))
