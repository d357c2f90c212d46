"""The feature front end in numpy: :class:`musetag.features.frontend.FeatureExtractor`'s computation
(pad -> windowed STFT -> power -> mel -> dB -> normalise) without torch.

Why: importing torch alone costs more than tagging one song with an ONNX graph, so the torch-free
tagging path (``musetag tag`` on the onnx backend) computes features here. It follows the torch
module step for step on the same :class:`FeatureConfig` (same window and filterbank from
:mod:`musetag.features.filters`, same padding, same frame count, same dB floor and ``top_db``
clipping), taking and returning numpy arrays: ``(batch, samples)`` or ``(batch, channels, samples)``
-> ``(batch, channels, n_mels, frames)`` (mel) or ``(batch, channels, samples)`` (waveform).
The STFT is ``scipy.fft.rfft`` over strided frames (pocketfft in float32, as ``torch.stft`` on the
CPU; about 3x faster than ``numpy.fft.rfft`` on these frames); the results agree with the torch module
to float32 rounding (``tests/test_onnx_path.py``: features and the default model's scores on real songs).
The mel product runs on one BLAS thread: this front end runs in decoding workers that each own a core,
and OpenBLAS's default threads (one per core, busy-waiting between calls) tripled its CPU time there.
"""
from __future__ import annotations

import numpy as np
import scipy.fft
from threadpoolctl import ThreadpoolController

from musetag.errors import ConfigError
from musetag.features.filters import analysis_window, mel_filterbank, used_bins
from musetag.features.presets import FeatureConfig, require_stats

__all__ = ["NumpyFeatureExtractor"]

_BLAS: list[ThreadpoolController] = []


def _one_blas_thread():
    """A context with numpy's BLAS on one thread. The controller is made once per process: making one
    scans every loaded shared library (about 100 in a tagging worker, 0.7 ms a call)."""
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


#: frames per STFT call: bounds the complex spectrogram held at once (the frames are the same)
_FRAMES_PER_CALL = 2048


class NumpyFeatureExtractor:
    """Waveform -> features for one :class:`FeatureConfig`, in numpy (see the module docstring).

    ``normalize=True`` applies the config's ``(x - mean) / std`` at the end, as the torch module does."""

    def __init__(self, config: FeatureConfig, *, normalize: bool = False) -> None:
        self.config = config
        self.normalize = bool(normalize)
        if normalize:
            require_stats(config)
        if config.kind == "mel":
            self.window = analysis_window(config).astype(np.float32)
            basis = np.asarray(mel_filterbank(config), dtype=np.float32)
            self._band = used_bins(basis)  # only these bins are squared and projected, as in the torch module
            self.mel_basis = np.ascontiguousarray(basis[:, self._band[0] : self._band[1]])
        if normalize:
            mean = np.asarray(config.mean, dtype=np.float32).reshape(-1)
            std = np.asarray(config.std, dtype=np.float32).reshape(-1)
            if config.kind == "waveform" and mean.size > 1:
                raise ConfigError("waveform features take a single mean/std value")
            shape = (1, 1, -1, 1) if config.kind == "mel" else (1, 1, 1)
            self.norm_mean, self.norm_std = mean.reshape(shape), std.reshape(shape)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        cfg = self.config
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 2:
            wave = wave[:, None, :]
        if wave.ndim != 3:
            raise ValueError(f"expected (batch, samples) or (batch, channels, samples), got {wave.shape}")
        if cfg.mono:
            if wave.shape[1] != 1:
                wave = wave.mean(axis=1, keepdims=True, dtype=np.float32)
        elif wave.shape[1] == 1:
            wave = np.repeat(wave, 2, axis=1)
        elif wave.shape[1] != 2:
            raise ValueError(f"config {cfg.name!r} is stereo: expected 1 or 2 channels, got {wave.shape[1]}")
        out = wave if cfg.kind == "waveform" else self._mel(wave)
        if self.normalize:
            out = ((out - self.norm_mean) / self.norm_std).astype(np.float32)
        return out

    def _mel(self, wave: np.ndarray) -> np.ndarray:
        cfg = self.config
        batch, channels, samples = wave.shape
        if cfg.center and cfg.pad_mode == "reflect" and samples <= cfg.n_fft // 2:
            raise ValueError(
                f"config {cfg.name!r} pads by reflection: it needs more than {cfg.n_fft // 2} samples, got {samples}; "
                "zero-pad short clips first (compute_features does)"
            )
        x = wave.reshape(batch * channels, samples)
        if cfg.pad_end:
            x = np.pad(x, [(0, 0), (0, (-samples) % cfg.hop_length)])
        if cfg.center:
            half = cfg.n_fft // 2
            x = np.pad(x, [(0, 0), (half, half)], mode=cfg.pad_mode)
        with _one_blas_thread():
            mel = np.stack([self._mel_rows(row) for row in x])  # (batch*channels, n_mels, frames)
        if cfg.drop_first_frames:
            mel = mel[..., cfg.drop_first_frames :]
        mel = mel.reshape(batch, channels, cfg.n_mels, mel.shape[-1])
        if cfg.to_db and cfg.top_db is not None:
            peak = mel.max(axis=(1, 2, 3), keepdims=True)
            mel = np.maximum(mel, peak - np.float32(cfg.top_db))
        return np.ascontiguousarray(mel, dtype=np.float32)

    def _mel_rows(self, x: np.ndarray) -> np.ndarray:
        """``(n_mels, frames)`` of one padded signal: frames of ``n_fft`` every ``hop_length``."""
        cfg = self.config
        n_fft, hop = cfg.n_fft, cfg.hop_length
        n_frames = 1 + (x.shape[-1] - n_fft) // hop if x.shape[-1] >= n_fft else 0
        out = np.empty((cfg.n_mels, n_frames), dtype=np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]  # (frames, n_fft), a view
        lo, hi = self._band
        for a in range(0, n_frames, _FRAMES_PER_CALL):
            spec = scipy.fft.rfft(frames[a : a + _FRAMES_PER_CALL] * self.window, axis=-1)[:, lo:hi]
            power = (spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2)
            if cfg.power != 2.0:
                power = power ** np.float32(cfg.power / 2.0)
            mel = self.mel_basis @ power.T  # (n_mels, frames)
            if cfg.to_db:
                mel = np.float32(cfg.db_multiplier) * np.log10(np.maximum(mel, np.float32(cfg.db_amin)))
            out[:, a : a + _FRAMES_PER_CALL] = mel
        return out
