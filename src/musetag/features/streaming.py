"""Features of audio that arrives in blocks, equal to the whole-file features (up to float rounding).

Two uses, one implementation:

- :meth:`StreamingFeatures.frames`: consecutive frame chunks of audio decoded block by block
  (:func:`musetag.audio.stream_blocks`), so a file of any length is featurised in bounded memory;
  what the tagger (``musetag tag``, ``embed``, ``serve``) does with long files.
- :meth:`StreamingFeatures.blockwise`: the features of audio held in memory, computed
  :data:`FEATURE_BLOCK_SECONDS` at a time through the same code (the complex spectrogram of a whole
  song is never materialised).

Each step computes the frames of the buffered audio and keeps those whose analysis window lies
inside the buffer (or touches the file's start or end, where the padding is the whole-file padding).
Exactness is tested in ``tests/test_features_streaming.py``.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

import numpy as np

from musetag.errors import AudioError, ConfigError
from musetag.features.presets import FeatureConfig

__all__ = ["ENGINES", "FEATURE_BLOCK_SECONDS", "StreamingFeatures"]

#: mel features of audio held in memory are computed this many seconds at a time: the complex
#: spectrogram of a whole song (~50 MB for 7 min at 16 kHz) is never materialised, which saves
#: page faults and cache misses (about 40 % of the feature time; the frames are the same)
FEATURE_BLOCK_SECONDS = 15.0


#: what computes the frames: the torch module (training's front end) or its numpy twin (no torch import)
ENGINES = ("torch", "numpy")


class StreamingFeatures:
    """The feature computation of one :class:`FeatureConfig`, whole, block-wise or streamed.

    ``normalize``: apply the config's mean/std (a package's features carry them). ``engine``:
    ``"torch"`` (:class:`musetag.features.frontend.FeatureExtractor`) or ``"numpy"``
    (:class:`musetag.features.numpy_frontend.NumpyFeatureExtractor`, which never imports torch);
    both give the same features to float32 rounding."""

    def __init__(self, config: FeatureConfig, *, normalize: bool, engine: str = "torch") -> None:
        if engine not in ENGINES:
            raise ConfigError(f"feature engine {engine!r} is not one of {', '.join(ENGINES)}")
        if engine == "torch":
            from musetag.features.frontend import FeatureExtractor as make
        else:
            from musetag.features.numpy_frontend import NumpyFeatureExtractor as make

        self.config = config
        self.kind = config.kind
        self.engine = engine
        self.sample_rate = int(config.sample_rate)
        self.extractor = make(config, normalize=normalize)
        # streaming computes frames of any stretch of audio and drops the first ones itself
        self.stream_extractor = make(dataclasses.replace(config, drop_first_frames=0), normalize=normalize)
        if engine == "torch":
            self.extractor.eval()
            self.stream_extractor.eval()

    def run(self, extractor, wave: np.ndarray) -> np.ndarray:
        """``extractor`` (one of this object's) on a ``(batch, C, samples)`` array, as an array."""
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        if self.engine == "numpy":
            return extractor(wave)
        import torch

        with torch.inference_mode():
            return extractor(torch.from_numpy(wave)).numpy()

    def features(self, audio: np.ndarray, extractor=None) -> np.ndarray:
        """``(channels, samples)`` audio at the config's rate -> ``(C, n_mels, frames)`` (mel) or
        ``(C, samples)`` (waveform), in one go."""
        return self.run(extractor or self.extractor, np.asarray(audio, dtype=np.float32)[None])[0]

    def blockwise(self, audio: np.ndarray) -> np.ndarray:
        """:meth:`features` of ``(channels, samples)`` audio, computed block by block.

        The result is the whole-file result up to float rounding. A per-file dB floor (``top_db``)
        would differ per block: such configs, and waveform inputs, are computed at once."""
        block = int(FEATURE_BLOCK_SECONDS * self.sample_rate)
        if self.kind != "mel" or self.config.top_db is not None or audio.shape[-1] <= 2 * block:
            return self.features(audio)
        pieces = (audio[..., i : i + block] for i in range(0, audio.shape[-1], block))
        return np.concatenate(list(self.frames(pieces)), axis=-1)

    def frames(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Consecutive frame chunks of consecutive audio ``blocks`` (``(samples,)`` or
        ``(channels, samples)`` at the config's rate) that equal the whole-file features.

        The audio the next frames no longer need is dropped as it goes. Frames depend on a
        per-file quantity only with ``top_db`` clipping, which is then applied per block."""
        cfg = self.config
        if self.kind == "waveform":
            for block in blocks:
                block = np.asarray(block, dtype=np.float32)
                block = block[None] if block.ndim == 1 else block
                yield self.features(block)
            return
        hop, n_fft = cfg.hop_length, cfg.n_fft
        half = n_fft // 2 if cfg.center else 0  # frame t reads samples [t*hop - half, t*hop - half + n_fft)
        # audio kept before the next frame, a multiple of the hop: at least half a window (frame
        # next_frame's window starts there) plus one sample, so that the last buffer is always
        # longer than the padding (reflection padding needs it)
        margin = -(-(half + 1) // hop) * hop
        drop_first = cfg.drop_first_frames
        buf: np.ndarray | None = None
        buf_start = 0  # absolute sample index of buf[..., 0]; a multiple of hop
        next_frame = 0  # absolute index (before drop_first_frames) of the next frame to emit
        samples = 0

        def emit(feats: np.ndarray, upto: int) -> np.ndarray:
            first = next_frame - buf_start // hop
            lo = max(next_frame, drop_first)
            return feats[..., first + (lo - next_frame) : first + max(0, upto - next_frame)]

        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            block = block[None] if block.ndim == 1 else block
            samples += block.shape[-1]
            buf = block if buf is None else np.concatenate([buf, block], axis=-1)
            upto = (buf_start + buf.shape[-1] + half - n_fft) // hop + 1  # frames < upto are exact
            if upto <= next_frame:
                continue
            out = emit(self.features(buf, self.stream_extractor), upto)
            if out.shape[-1]:
                yield out
            next_frame = upto
            cut = max(0, next_frame * hop - margin - buf_start)
            if cut:
                buf = buf[..., cut:]
                buf_start += cut
        if buf is None:
            raise AudioError("no audio samples could be decoded")
        end = cfg.n_frames(samples) + drop_first  # whole-file frame count before dropping
        if end > next_frame:
            out = emit(self.features(buf, self.stream_extractor), end)
            if out.shape[-1]:
                yield out
