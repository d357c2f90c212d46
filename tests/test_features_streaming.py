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


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_frame_blocks_are_the_frames_of_the_padded_signal_without_copying_it(mode):
    """The numpy front end frames a signal without padding a copy of it: the blocks, joined, are exactly the
    frames of ``numpy.pad(x, half, mode)`` for every length around the edge cases (shorter than a window, one
    hop either side of a frame boundary), hop and window; the frames inside are views of ``x`` itself, also
    of a strided channel of interleaved stereo."""
    from musetag.features.numpy_frontend import frame_blocks

    rng = np.random.default_rng(0)
    for n_fft, hop in ((8, 4), (8, 3), (16, 5), (512, 256)):
        half = n_fft // 2
        for n in list(range(half + 1, 4 * n_fft + 3)) + [5000, 5001, 5003]:
            x = rng.standard_normal(n).astype(np.float32)
            padded = np.pad(x, (half, half), mode=mode)
            want = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
            got = np.concatenate(frame_blocks(x, n_fft, hop, half, mode))
            np.testing.assert_array_equal(got, want, err_msg=f"n_fft {n_fft} hop {hop} length {n}")
    stereo = rng.standard_normal((6000, 2)).astype(np.float32)  # interleaved, as a decoder gives it
    left = stereo[:, 0]
    blocks = frame_blocks(left, 512, 256, 256, mode)
    assert len(blocks) == 3 and np.shares_memory(blocks[1], stereo)
    np.testing.assert_array_equal(np.concatenate(blocks), np.lib.stride_tricks.sliding_window_view(
        np.pad(np.ascontiguousarray(left), (256, 256), mode=mode), 512)[::256])


@pytest.mark.parametrize("name", ["jamendo96", "bour128", "fusion64"])
def test_banded_mel_product_equals_the_dense_product(name):
    """The mel product by runs of filters over their own bins equals the dense product (float32 summation
    order only), also for a filterbank with all-zero filters (more mels than the bins can separate)."""
    from musetag.features import get_preset
    from musetag.features.numpy_frontend import NumpyFeatureExtractor, _banded_product, _filter_bands

    rng = np.random.default_rng(0)
    basis = NumpyFeatureExtractor(get_preset(name)).mel_basis
    sparse = np.zeros((20, 64), np.float32)
    sparse[3, 10:14] = 1.0  # one run empty, the next with a single filter
    sparse[17, 40:50] = 0.5
    for b in (basis, sparse):
        values = rng.random((300, b.shape[1]), dtype=np.float32)
        dense = b.astype(np.float64) @ values.T.astype(np.float64)
        got = _banded_product(_filter_bands(b), values, np.full((b.shape[0], 300), np.nan, np.float32))
        assert got.shape == dense.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, dense, rtol=2e-6, atol=1e-6 * np.abs(dense).max())
