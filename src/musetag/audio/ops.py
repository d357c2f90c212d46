"""Small array operations on decoded audio: resampling, downmixing, cropping and chunking.

Layout convention (the same as librosa): mono audio is ``(samples,)``, multichannel audio is
``(channels, samples)``; all functions keep float32.
"""
from __future__ import annotations

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
    # Output sample n sits at input position n * orig_sr / target_sr (the first output sample is
    # the first input sample), as in libsamplerate's linear converter. The output length is
    # ceil(n_in * ratio); libsamplerate may emit one sample less at the very end.
    n_in = audio.shape[-1]
    n_out = int(np.ceil(n_in * target_sr / orig_sr))
    pos = np.arange(n_out, dtype=np.float64) * (orig_sr / target_sr)
    pos = np.minimum(pos, n_in - 1)
    left = np.floor(pos).astype(np.int64)
    right = np.minimum(left + 1, n_in - 1)
    frac = (pos - left).astype(np.float32)
    return (audio[..., left] + frac * (audio[..., right] - audio[..., left])).astype(np.float32, copy=False)


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
