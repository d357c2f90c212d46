"""Training's datasets on arrays that encode their own frame index (known answers): the excerpt of a
crop seed, read without the rest of the track, padding, normalisation, and DataLoader workers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from musetag.features import get_preset
from musetag.training.data import CropDataset, EpochSampler, SplitData, TrainingData, collate

LENGTHS = [1000, 400, 50, 960]
MEAN, STD = 500.0, 250.0


@pytest.fixture()
def data(tmp_path) -> TrainingData:
    paths = []
    for i, n in enumerate(LENGTHS):
        # value = 1000 * track + frame index, identical in every band: an excerpt reveals its position
        # (track 1 stored as float16, as caches are by default: exact below 2048)
        path = tmp_path / f"{i}.npy"
        np.save(path, np.tile(np.arange(n, dtype=np.float16 if i == 1 else np.float32) + 1000 * i, (96, 1)))
        paths.append(path)
    targets = np.eye(len(LENGTHS), 3, dtype=np.float32)
    split = SplitData("train", [f"t{i}" for i in range(len(LENGTHS))], paths, targets)
    config = get_preset("jamendo96").with_stats(MEAN, STD)
    return TrainingData("multilabel", ["a", "b", "c"], config, {"train": split}, tmp_path, normalize=True)


def _raw(x: torch.Tensor) -> np.ndarray:
    return x.numpy()[0, 0] * STD + MEAN


def test_a_crop_is_the_excerpt_its_seed_names(data):
    ds = CropDataset(data, "train", 128)
    for index in (0, 1, 3):
        item = ds[(index, 12345)]
        assert item["x"].shape == (1, 96, 128) and item["x"].dtype == torch.float32
        start = int(np.random.default_rng(12345).integers(0, LENGTHS[index] - 128 + 1))
        np.testing.assert_allclose(_raw(item["x"]), 1000 * index + np.arange(start, start + 128), atol=0.5)
        # the same numbers as cutting the whole normalised track
        whole = data.load("train", index)
        assert np.array_equal(item["x"].numpy(), whole[..., start:start + 128])
        np.testing.assert_array_equal(item["y"].numpy(), np.eye(4, 3)[index])


def test_short_tracks_are_zero_padded_and_crop_0_is_the_whole_track(data):
    item = CropDataset(data, "train", 128)[(2, 7)]
    x = item["x"].numpy()[0, 0]
    np.testing.assert_allclose(x[:50] * STD + MEAN, 2000 + np.arange(50), atol=0.5)
    assert np.all(x[50:] == 0)
    whole = CropDataset(data, "train", 0)[(1, 7)]["x"]
    assert whole.shape == (1, 96, 400)


def test_loader_workers_change_nothing(data):
    ds = CropDataset(data, "train", 64)

    def batches(workers: int) -> torch.Tensor:
        sampler = EpochSampler(len(LENGTHS), seed=5)
        sampler.set_epoch(2)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate, num_workers=workers)
        return torch.cat([b["x"] for b in loader])

    serial = batches(0)
    assert serial.shape == (4, 1, 96, 64)
    assert torch.equal(serial, batches(2))
