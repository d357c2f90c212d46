"""Small array operations on decoded audio: resampling, downmixing, cropping and chunking.

Layout convention (the same as librosa): mono audio is ``(samples,)``, multichannel audio is
``(channels, samples)``; all functions keep float32.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import soxr

from musetag.errors import ConfigError

#: resampling methods accepted by :func:`resample` ("soxr_*" are soxr quality presets)
RESAMPLE_METHODS = ("soxr_vhq", "soxr_hq", "soxr_mq", "soxr_lq", "linear")
_SOXR_QUALITY = {"soxr_vhq": "VHQ", "soxr_hq": "HQ", "soxr_mq": "MQ", "soxr_lq": "LQ"}


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of ``(channels, samples)`` audio; mono input is returned unchanged.

    Averaging (not summing) is what librosa's ``to_mono`` and Essentia's ``MonoLoader`` do.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {audio.shape}")
    if audio.shape[0] == 1:
        return audio[0]
    return audio.mean(axis=0, dtype=np.float32)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int, *, method: str = "soxr_hq") -> np.ndarray:
    """Resample ``(samples,)`` or ``(channels, samples)`` audio from ``orig_sr`` to ``target_sr``.

    ``method``: a soxr quality (``"soxr_hq"``, librosa's default, is band-limited and alias-free) or
    ``"linear"``: plain linear interpolation between input samples, without an anti-aliasing
    filter. ``"linear"`` reproduces libsamplerate's ``SRC_LINEAR`` converter, which is what
    Essentia's ``MonoLoader(resampleQuality=4)`` used for the official MTG-Jamendo mel-spectrograms;
    keep it only where matching those files matters more than avoiding aliasing.
    """
    audio = np.asarray(audio, dtype=np.float32)
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ConfigError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr or audio.shape[-1] == 0:
        return audio
    if method == "linear":
        return _resample_linear(audio, orig_sr, target_sr)
    quality = _SOXR_QUALITY.get(method)
    if quality is None:
        raise ConfigError(f"unknown resampling method {method!r}; use one of {', '.join(RESAMPLE_METHODS)}")
    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality=quality).astype(np.float32, copy=False)
    # soxr wants (frames, channels); keep the result C-contiguous in our (channels, samples) layout
    out = soxr.resample(np.ascontiguousarray(audio.T), orig_sr, target_sr, quality=quality)
    return np.ascontiguousarray(out.T, dtype=np.float32)


def _resample_linear(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Whole-signal version of :class:`LinearResampler`, polyphase and in exact integer arithmetic.

    With ``orig_sr / target_sr = P / Q`` in lowest terms, output ``n = Q k + j`` lies at input
    position ``P k + j P / Q - 1``: the ``Q`` fractional phases repeat every ``P`` input samples, so
    the interpolation is two gathers of ``Q`` columns from a strided ``(K, width)`` view of the
    signal, without per-sample position and index arrays.
    """
    g = math.gcd(orig_sr, target_sr)
    P, Q = orig_sr // g, target_sr // g
    n_in = audio.shape[-1]
    n_out = -(-n_in * Q // P)  # ceil(n_in * target / orig)
    rows = -(-n_out // Q)
    j = np.arange(Q, dtype=np.int64)
    base = (j * P) // Q  # integer part of j * P / Q
    frac = ((j * P) % Q).astype(np.float32) / np.float32(Q)
    width = int(base[-1]) + 2
    # position p = n * P / Q - 1 in the signal is p + 1 in `ext`, whose sample 0 repeats the first
    # sample (libsamplerate holds it before the start) and whose tail repeats the last one
    need = P * (rows - 1) + width
    pad_end = max(0, need - (n_in + 1))
    ext = np.concatenate(
        [audio[..., :1], audio, np.repeat(audio[..., -1:], pad_end, axis=-1)], axis=-1
    ).astype(np.float32, copy=False)
    windows = np.lib.stride_tricks.sliding_window_view(ext, width, axis=-1)[..., ::P, :][..., :rows, :]
    left = windows[..., base]  # (..., rows, Q)
    right = windows[..., base + 1]
    out = left + frac * (right - left)
    return np.ascontiguousarray(out.reshape(audio.shape[:-1] + (rows * Q,))[..., :n_out], dtype=np.float32)


class LinearResampler:
    """Linear-interpolation resampling, chunk by chunk, equal to libsamplerate's ``SRC_LINEAR``.

    libsamplerate's linear converter puts output sample ``n`` at input position
    ``n * orig_sr / target_sr - 1`` (one input sample of delay; before the first sample it holds
    the first sample's value) and emits ``ceil(n_in * target_sr / orig_sr)`` samples in total.
    Feeding the signal in chunks gives exactly the same samples as one call.
    """

    def __init__(self, orig_sr: int, target_sr: int) -> None:
        self.step = orig_sr / target_sr
        self.ratio = target_sr / orig_sr
        self.pos = -1.0  # next output position, relative to the first sample held in self.tail
        self.tail: np.ndarray | None = None
        self.consumed = 0  # input samples seen
        self.emitted = 0  # output samples produced

    def process(self, chunk: np.ndarray, *, last: bool = False) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float32)
        data = chunk if self.tail is None else np.concatenate([self.tail, chunk], axis=-1)
        self.consumed += chunk.shape[-1]
        n = data.shape[-1]
        if last:
            count = int(np.ceil(self.consumed * self.ratio - 1e-9)) - self.emitted
        else:
            # only positions whose right neighbour has arrived: pos + k * step < n - 1
            count = int(np.ceil((n - 1 - self.pos) / self.step)) if n - 1 > self.pos else 0
        count = max(0, count)
        if n == 0 or count == 0:
            self.tail = data
            return np.zeros(data.shape[:-1] + (0,), dtype=np.float32)
        pos = np.clip(self.pos + self.step * np.arange(count), 0.0, n - 1)
        left = np.floor(pos).astype(np.int64)
        right = np.minimum(left + 1, n - 1)
        frac = (pos - left).astype(np.float32)
        out = data[..., left] + frac * (data[..., right] - data[..., left])
        self.emitted += count
        new_pos = self.pos + self.step * count
        keep_from = int(min(max(np.floor(new_pos), 0), n))
        self.tail = data[..., keep_from:]
        self.pos = new_pos - keep_from
        return out.astype(np.float32, copy=False)


def trim_silence(
    audio: np.ndarray,
    *,
    top_db: float = 60.0,
    frame_length: int = 2048,
    hop_length: int = 512,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Cut leading and trailing silence: ``librosa.effects.trim`` with its defaults, in plain numpy.

    Frames (``frame_length`` long, every ``hop_length`` samples, centred with zero padding) whose RMS
    is more than ``top_db`` below the loudest frame are silent (multichannel: a frame is silent only
    when every channel is). Returns the trimmed audio and ``(start, end)`` in samples. As in librosa,
    digital silence is kept whole (every frame is as loud as the loudest). librosa's version costs
    seconds of imports and numba compilation on first use in every process, hence this equivalent
    (tested against it).
    """
    audio = np.asarray(audio, dtype=np.float32)
    n = audio.shape[-1]
    if n == 0:
        return audio, (0, 0)
    half = frame_length // 2
    squares = np.square(audio.astype(np.float64))
    padded = np.pad(squares, [(0, 0)] * (audio.ndim - 1) + [(half, half)])
    csum = np.concatenate([np.zeros(audio.shape[:-1] + (1,)), np.cumsum(padded, axis=-1)], axis=-1)
    n_frames = 1 + n // hop_length
    starts = np.arange(n_frames) * hop_length
    ends = np.minimum(starts + frame_length, padded.shape[-1])
    mean_square = (csum[..., ends] - csum[..., starts]) / frame_length  # (..., n_frames)
    rms = np.sqrt(np.maximum(mean_square, 0.0))
    # librosa.amplitude_to_db(rms, ref=np.max): 20 log10(max(rms, 1e-5)) - 20 log10(max(max(rms), 1e-5))
    ref = np.max(rms, axis=-1, keepdims=True)
    db = 20.0 * np.log10(np.maximum(rms, 1e-5)) - 20.0 * np.log10(np.maximum(ref, 1e-5))
    if db.ndim > 1:
        db = db.reshape(-1, n_frames).max(axis=0)
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return audio[..., :0], (0, 0)
    start = int(loud[0] * hop_length)
    end = min(n, int((loud[-1] + 1) * hop_length))
    return audio[..., start:end], (start, end)


def crop(audio: np.ndarray, sample_rate: int, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
    """Samples from ``offset`` seconds, ``duration`` seconds long (to the end when None)."""
    start = max(0, int(round(offset * sample_rate)))
    stop = None if duration is None else start + max(0, int(round(duration * sample_rate)))
    return audio[..., start:stop]


def pad_or_crop(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad (at the end) or cut ``audio`` to exactly ``length`` samples."""
    n = audio.shape[-1]
    if n >= length:
        return audio[..., :length]
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, length - n)]
    return np.pad(audio, pad)


def chunks(
    audio: np.ndarray,
    chunk_length: int,
    hop_length: int | None = None,
    *,
    pad_last: bool = True,
) -> Iterator[np.ndarray]:
    """Yield consecutive windows of ``chunk_length`` samples (or frames), ``hop_length`` apart.

    Works along the last axis, so it chunks waveforms ``(..., samples)`` and spectrograms
    ``(..., n_mels, frames)`` alike. Input shorter than one chunk yields one (padded) chunk. With
    ``pad_last`` the final partial window is zero-padded to full length; otherwise it is dropped
    (unless it is the only one).
    """
    if chunk_length <= 0:
        raise ConfigError(f"chunk_length must be positive, got {chunk_length}")
    hop = chunk_length if hop_length is None else int(hop_length)
    if hop <= 0:
        raise ConfigError(f"hop_length must be positive, got {hop_length}")
    n = audio.shape[-1]
    if n <= chunk_length:
        yield pad_or_crop(audio, chunk_length)
        return
    start = 0
    while start + chunk_length <= n:
        yield audio[..., start : start + chunk_length]
        start += hop
    if pad_last and start < n and start + chunk_length - hop < n:
        yield pad_or_crop(audio[..., start:], chunk_length)
