"""Numpy helpers on features, without torch: one signal's features (:func:`compute_features`, through
:class:`~musetag.features.numpy_frontend.NumpyFeatureExtractor`), normalisation, streaming statistics and
the MTG-Jamendo baseline's centred excerpt. ``musetag features``, the feature cache and the torch-free
tagging path run these (:mod:`musetag.features.frontend` is the torch module)."""
from __future__ import annotations

import functools
import json

import numpy as np

from musetag.errors import ConfigError
from musetag.features.prepare import prepare_audio
from musetag.features.presets import FeatureConfig

__all__ = ["JAMENDO_EXCERPT_SAMPLES", "compute_features", "compute_stats", "jamendo_excerpt_features", "normalize"]


@functools.lru_cache(maxsize=16)
def _cached_numpy_extractor(key: str):
    from musetag.features.numpy_frontend import NumpyFeatureExtractor

    return NumpyFeatureExtractor(FeatureConfig.from_dict(json.loads(key)))


def compute_features(audio: np.ndarray, sample_rate: int, config: FeatureConfig) -> np.ndarray:
    """Features of one signal as numpy (never normalised; see :func:`normalize`).

    ``audio``: ``(samples,)`` or ``(channels, samples)`` at ``sample_rate`` (resampled as needed).
    Returns mel mono ``(n_mels, frames)``, mel stereo ``(2, n_mels, frames)``, waveform
    ``(samples,)`` or ``(2, samples)``; float32.

    The mel features come from :class:`~musetag.features.numpy_frontend.NumpyFeatureExtractor`, the torch
    module's computation in numpy (equal to float32 rounding, tested): on a whole song its blocked
    STFT (pocketfft in scipy) keeps the working set in cache, it reads interleaved stereo in place and
    multiplies each run of mel filters by its own bins only: files -> features 3.3x the librosa pipeline for
    fusion64 and bour128, 1.8x Essentia's for jamendo96 (``bench/features.py``). The torch module is for
    batches on a device, training and export.
    """
    wave = prepare_audio(audio, sample_rate, config, contiguous=config.kind != "mel")  # (channels, samples)
    if config.kind == "waveform":
        return wave[0] if config.mono else wave
    extractor = _cached_numpy_extractor(json.dumps(config.to_dict(), sort_keys=True))
    out = extractor(wave[None])[0]  # (channels, n_mels, frames)
    return out[0] if config.mono else out


def normalize(features: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``(features - mean) / std`` with the config's statistics (per band when they are lists)."""
    if config.mean is None or config.std is None:
        raise ConfigError(f"feature config {config.name!r} has no mean/std to normalise with")
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    if config.kind == "mel" and mean.ndim == 1 and mean.size > 1:
        mean, std = mean[:, None], std[:, None]  # (n_mels, 1) broadcasts over frames
    return ((features - mean) / std).astype(np.float32)


def compute_stats(features, *, per_band: bool = False) -> tuple:
    """Mean and standard deviation over an iterable of feature arrays (streaming, float64).

    ``per_band``: one value per mel band (axis -2) instead of one global value. Returns floats or
    lists, ready for :meth:`FeatureConfig.with_stats`.
    """
    count = 0
    total = None
    total_sq = None
    for feats in features:
        x = np.asarray(feats, dtype=np.float64)
        if per_band:
            x = np.moveaxis(x, -2, 0).reshape(x.shape[-2], -1)  # (n_mels, everything else)
            s, sq, n = x.sum(axis=1), np.square(x).sum(axis=1), x.shape[1]
        else:
            s, sq, n = x.sum(), np.square(x).sum(), x.size
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += n
    if not count:
        raise ConfigError("compute_stats: no features given")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 1e-12))
    if per_band:
        return [float(v) for v in mean], [float(v) for v in std]
    return float(mean), float(std)


#: the MediaEval 2019 baseline's input: 29.1 s at 12 kHz (96 x 1366 jamendo96 frames)
JAMENDO_EXCERPT_SAMPLES = 349200


def jamendo_excerpt_features(
    audio: np.ndarray, sample_rate: int, config: FeatureConfig | str = "jamendo96"
) -> np.ndarray:
    """jamendo96 features of the centred 29.1 s excerpt: the MTG-Jamendo MediaEval 2019 baseline input.

    ``audio``: ``(samples,)`` or ``(channels, samples)`` at ``sample_rate`` (any rate: it is downmixed
    and resampled as ``config`` says, i.e. for ``jamendo96`` averaged to mono and resampled to 12 kHz
    with Essentia's linear converter; pass 12 kHz mono audio to skip both). The excerpt is
    ``JAMENDO_EXCERPT_SAMPLES`` (349,200) samples starting ``(len - 349200) // 2`` samples into the
    12 kHz signal, exactly as the official baseline cut it; its features are computed on the excerpt
    alone (zero padding at both ends, as Essentia framed it), giving ``(96, 1366)`` float32 dB values.
    Audio shorter than 29.1 s is zero-padded at the end to the full length (the official data has no
    shorter track). ``config``: a preset name or :class:`FeatureConfig` (default ``"jamendo96"``).
    """
    from musetag.features.presets import get_preset

    cfg = get_preset(config) if isinstance(config, str) else config
    if cfg.kind != "mel" or not cfg.mono:
        raise ConfigError(f"jamendo_excerpt_features needs a mono mel config (jamendo96), got {cfg.name!r}")
    wave = prepare_audio(audio, sample_rate, cfg)[0]  # mono at cfg.sample_rate
    n = wave.shape[-1]
    if n >= JAMENDO_EXCERPT_SAMPLES:
        start = (n - JAMENDO_EXCERPT_SAMPLES) // 2
        wave = wave[start : start + JAMENDO_EXCERPT_SAMPLES]
    else:
        wave = np.pad(wave, (0, JAMENDO_EXCERPT_SAMPLES - n))
    return compute_features(wave, cfg.sample_rate, cfg)
