"""Audio as a feature config wants it (channels, rate, trimming), without torch: what every front end
(torch or numpy) is fed."""
from __future__ import annotations

import numpy as np

from musetag.audio.ops import resample, to_mono, trim_silence
from musetag.errors import AudioError, ConfigError
from musetag.features.presets import FeatureConfig


def prepare_audio(audio: np.ndarray, sample_rate: int, config: FeatureConfig, *, contiguous: bool = True) -> np.ndarray:
    """Resample, downmix or up-mix, and trim ``audio`` as ``config`` asks.

    Returns ``(channels, samples)`` float32 at ``config.sample_rate`` with ``config.channels`` rows; C-contiguous
    unless ``contiguous=False`` (then possibly a view of interleaved stereo, as :func:`musetag.audio.load_audio`
    returns it: the numpy front end frames such rows in place instead of copying the song once more).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2):
        raise ConfigError(f"audio must be (samples,) or (channels, samples), got shape {audio.shape}")
    if audio.shape[-1] == 0:
        raise AudioError("the audio has no samples; there is nothing to compute features from")
    if config.mono:
        audio = to_mono(audio)[None, :]
    else:
        if audio.ndim == 1:
            audio = audio[None, :]
        if audio.shape[0] == 1:
            audio = np.repeat(audio, 2, axis=0)
        elif audio.shape[0] != 2:
            raise ConfigError(
                f"feature config {config.name!r} is stereo but the audio has {audio.shape[0]} channels; "
                "downmix it to stereo first"
            )
    if int(sample_rate) != config.sample_rate:
        audio = resample(audio, int(sample_rate), config.sample_rate, method=config.resample_method)
    if config.trim_silence:
        audio, _ = trim_silence(audio, top_db=config.trim_top_db)  # librosa.effects.trim defaults
    if config.kind == "mel" and config.center and config.pad_mode == "reflect":
        # reflect padding needs more than n_fft // 2 samples: zero-extend very short clips (< ~25 ms)
        short = config.n_fft // 2 + 1 - audio.shape[-1]
        if short > 0:
            audio = np.pad(audio, [(0, 0), (0, short)])
    return np.ascontiguousarray(audio, dtype=np.float32) if contiguous else np.asarray(audio, dtype=np.float32)
