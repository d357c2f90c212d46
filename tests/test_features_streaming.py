"""Streaming / block-wise feature computation (musetag.features.streaming): the frames equal the
whole-file frames whatever the blocks, the file's edges and the framing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from musetag.features.presets import FeatureConfig
from musetag.features.streaming import FEATURE_BLOCK_SECONDS, StreamingFeatures
from test_package import feature_dict

SR = 12000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _streaming(**overrides) -> StreamingFeatures:
    return StreamingFeatures(FeatureConfig.from_dict(feature_dict(**overrides)), normalize=True)


def _noise(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(n) * np.linspace(0.05, 1, n)).astype(np.float32)


@pytest.mark.parametrize(
    "overrides,extra",
    [
        ({}, 87_600),
        ({"top_db": 60.0}, 87_600),
        # reflection padding with a hop of half the window (bour128's framing): a length that is a
        # multiple of the hop once left a last buffer exactly as long as the padding (an error)
        ({"pad_mode": "reflect", "pad_end": False, "n_fft": 1024, "hop_length": 512, "drop_first_frames": 1}, 160),
        ({"pad_mode": "reflect", "pad_end": False, "n_fft": 1024, "hop_length": 512, "drop_first_frames": 1}, 3_777),
    ],
)
def test_blockwise_features_equal_whole_file_features(overrides, extra):
    """In-memory mel features are computed FEATURE_BLOCK_SECONDS at a time: the same frames as the
    whole file at once (a per-file top_db floor keeps the one-shot path, it would differ per block)."""
    streaming = _streaming(**overrides)
    audio = _noise(int(3 * FEATURE_BLOCK_SECONDS * SR) + extra, seed=5)  # extra samples
    whole = streaming.features(audio[None])
    blocks = streaming.blockwise(audio[None])
    assert blocks.shape == whole.shape
    np.testing.assert_allclose(blocks, whole, atol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # jamendo96: constant padding, pad_end (Essentia framing)
        {"pad_mode": "reflect", "pad_end": False, "drop_first_frames": 1, "n_fft": 1024, "hop_length": 300},
    ],
)
@pytest.mark.parametrize("block", [1_000, 4_097, 44_400])
def test_streamed_frames_equal_whole_file_features(overrides, block):
    """Blocks of any size (shorter than a window too), mono ``(samples,)`` blocks included."""
    streaming = _streaming(**overrides)
    audio = _noise(int(7.3 * SR), seed=3)
    whole = streaming.features(audio[None])
    parts = list(streaming.frames(audio[i : i + block] for i in range(0, audio.size, block)))
    streamed = np.concatenate(parts, axis=-1)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-5)


def test_streaming_nothing_is_an_audio_error():
    from musetag.errors import AudioError

    with pytest.raises(AudioError, match="no audio samples"):
        list(_streaming().frames(iter(())))
