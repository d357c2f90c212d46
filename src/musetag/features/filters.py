"""The feature front end's numbers that need no torch: the analysis window and the mel filterbanks
(librosa's or Essentia's single-precision construction), shared by the torch module
(:class:`musetag.features.frontend.FeatureExtractor`) and the numpy one
(:class:`musetag.features.numpy_frontend.NumpyFeatureExtractor`). Importing it loads numpy only;
librosa is imported when a librosa filterbank is built.
"""
from __future__ import annotations

import math

import numpy as np

from musetag.errors import ConfigError
from musetag.features.presets import FeatureConfig


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """``(n_mels, 1 + n_fft // 2)`` float32 filterbank for ``config``.

    ``config.filterbank == "librosa"``: ``librosa.filters.mel``; ``"essentia"``: Essentia's
    ``MelBands(warpingFormula="slaneyMel", weighting="linear")`` construction in single precision
    (:func:`essentia_mel_filterbank`).
    """
    if config.filterbank == "essentia":
        if config.htk:
            raise ConfigError(f"feature config {config.name!r}: filterbank 'essentia' implements the Slaney mel scale only (htk=False)")
        return essentia_mel_filterbank(
            sr=config.sample_rate,
            n_fft=config.n_fft,
            n_mels=config.n_mels,
            fmin=config.f_min,
            fmax=config.f_max if config.f_max is not None else config.sample_rate / 2,
            norm=config.mel_norm,
        )
    import librosa

    return librosa.filters.mel(
        sr=config.sample_rate,
        n_fft=config.n_fft,
        n_mels=config.n_mels,
        fmin=config.f_min,
        fmax=config.f_max,
        htk=config.htk,
        norm=config.mel_norm,
        dtype=np.float32,
    )


_F32 = np.float32
_SLANEY_LOG_STEP = _F32(math.log(6.4) / 27.0)


def used_bins(basis: np.ndarray) -> tuple[int, int]:
    """``(lo, hi)``: the frequency bins some mel band of ``basis`` ``(n_mels, n_freq)`` weighs (bour128
    stops at 16 kHz: 744 of 1025 bins). The bins outside are zero columns, so the front ends square and
    project only ``lo:hi``."""
    used = np.flatnonzero(np.abs(basis).sum(axis=0) > 0)
    return (int(used[0]), int(used[-1]) + 1) if used.size else (0, basis.shape[1])


def _hz2mel_slaney_f32(hz: float) -> np.float32:
    hz = _F32(hz)
    if hz < _F32(1000.0):
        return _F32(hz * _F32(3.0 / 200.0))
    return _F32(_F32(15.0) + _F32(np.log(_F32(hz / _F32(1000.0)))) / _SLANEY_LOG_STEP)


def _mel2hz_slaney_f32(mel: float) -> np.float32:
    mel = _F32(mel)
    if mel < _F32(15.0):
        return _F32(mel / _F32(3.0 / 200.0))
    return _F32(_F32(1000.0) * _F32(np.exp(_F32((mel - _F32(15.0)) * _SLANEY_LOG_STEP))))


def essentia_mel_filterbank(
    *, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, norm: str | None = "slaney"
) -> np.ndarray:
    """Essentia's ``MelBands`` filterbank (``warpingFormula="slaneyMel"``, ``weighting="linear"``),
    rebuilt step by step in single precision as Essentia's ``float`` code does it.

    Band edges: ``n_mels + 2`` frequencies from the Slaney mel of ``fmin`` by a constant mel step,
    the step *accumulated* in float32 and each mel mapped back to Hz. Filter ``i`` is a triangle
    linear in Hz over the FFT bins ``ceil(f[i] / df) .. floor(f[i+2] / df)`` (``df`` the bin spacing)
    and, with ``norm="slaney"`` (Essentia's ``unit_tri``), is divided by its theoretical area
    ``(f[i+2] - f[i]) / 2`` (``norm=None``: Essentia's ``unit_max``, no division).
    The result agrees with Essentia's own weights to ~3e-6 relative with the same non-zero bins;
    librosa's ``filters.mel`` (double precision, computed edges) differs by up to ~3e-5 relative
    and gives one bin a weight Essentia does not, which moves quiet bands of the official
    MTG-Jamendo spectrograms by up to 0.06 dB.
    """
    if norm not in (None, "slaney"):
        raise ConfigError(f"essentia_mel_filterbank: norm must be None or 'slaney', got {norm!r}")
    low, high = _hz2mel_slaney_f32(fmin), _hz2mel_slaney_f32(fmax)
    step = _F32((high - low) / _F32(n_mels + 1))
    edges = []
    mel = low
    for _ in range(n_mels + 2):
        edges.append(_mel2hz_slaney_f32(mel))
        mel = _F32(mel + step)
    n_bins = n_fft // 2 + 1
    df = _F32((float(_F32(sr)) / 2.0) / (n_bins - 1))
    weights = np.zeros((n_mels, n_bins), dtype=np.float32)
    for i in range(n_mels):
        f0, f1, f2 = edges[i], edges[i + 1], edges[i + 2]
        rise, fall = _F32(f1 - f0), _F32(f2 - f1)
        first = math.ceil(_F32(f0 / df))
        last = min(math.floor(_F32(f2 / df)), n_bins - 1)
        j = np.arange(first, last + 1)
        freq = (j * df).astype(np.float32)
        up = ((freq - f0) / rise).astype(np.float32)
        down = ((f2 - freq) / fall).astype(np.float32)
        row = np.where(freq < f1, up, down).astype(np.float32)
        if norm == "slaney":
            row = (row / _F32((float(rise) + float(fall)) / 2.0)).astype(np.float32)
        weights[i, first : last + 1] = row
    return weights


def analysis_window(config: FeatureConfig) -> np.ndarray:
    """The ``n_fft``-long window: ``win_length`` samples of ``config.window`` centred in zeros."""
    win_length = config.win_length or config.n_fft
    if config.window in ("hann", "hann_window"):
        # numpy directly: scipy.signal.get_window (librosa's path) costs seconds of import time
        n = win_length + 1 if config.window_periodic else win_length
        window = np.hanning(n)[:win_length] if n > 1 else np.ones(1)
    else:
        import scipy.signal

        window = scipy.signal.get_window(config.window, win_length, fftbins=config.window_periodic)
    left = (config.n_fft - win_length) // 2
    return np.pad(window.astype(np.float32), (left, config.n_fft - win_length - left))
