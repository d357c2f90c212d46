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

import math

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
            # power 2: each weight twice, for re^2 and im^2 side by side (see _mel_rows); else the filterbank itself
            self._bands = _filter_bands(np.repeat(self.mel_basis, 2, axis=1) if config.power == 2.0 else self.mel_basis)
            if config.to_db:  # the floor as the torch module gives it (-200 for amin 1e-20, not -200.00002)
                self._db_floor = np.float32(config.db_multiplier * math.log10(config.db_amin))
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
        half = cfg.n_fft // 2 if cfg.center else 0
        with _one_blas_thread():
            mel = np.stack([self._mel_rows(frame_blocks(row, cfg.n_fft, cfg.hop_length, half, cfg.pad_mode))
                            for row in x])  # (batch*channels, n_mels, frames)
        if cfg.drop_first_frames:
            mel = mel[..., cfg.drop_first_frames :]
        mel = mel.reshape(batch, channels, cfg.n_mels, mel.shape[-1])
        if cfg.to_db and cfg.top_db is not None:
            peak = mel.max(axis=(1, 2, 3), keepdims=True)
            mel = np.maximum(mel, peak - np.float32(cfg.top_db))
        return np.ascontiguousarray(mel, dtype=np.float32)

    def _mel_rows(self, blocks: list[np.ndarray]) -> np.ndarray:
        """``(n_mels, frames)`` of one signal's frames (:func:`frame_blocks`), ``_FRAMES_PER_CALL`` at a time."""
        cfg = self.config
        n_frames = sum(len(b) for b in blocks)
        out = np.empty((cfg.n_mels, n_frames), dtype=np.float32)
        lo, hi = self._band
        chunks = [frames[a : a + _FRAMES_PER_CALL] for frames in blocks for a in range(0, len(frames), _FRAMES_PER_CALL)]
        buf = np.empty((min(n_frames, _FRAMES_PER_CALL), cfg.n_fft), dtype=np.float32)
        at = 0
        for chunk in chunks:
            windowed = np.multiply(chunk, self.window, out=buf[: len(chunk)])  # scratch the FFT may overwrite
            spec = scipy.fft.rfft(windowed, axis=-1, overwrite_x=True)  # (k, n_fft // 2 + 1) complex64
            if cfg.power == 2.0:
                # re and im side by side as floats, squared in place; the doubled filterbank sums them in its
                # product: no separate power array (a third of this loop's time on stereo 44.1 kHz presets)
                pairs = spec.view(np.float32)[:, 2 * lo : 2 * hi]
                np.square(pairs, out=pairs)
                values = pairs
            else:
                band = spec[:, lo:hi]
                power = band.real.astype(np.float32) ** 2 + band.imag.astype(np.float32) ** 2
                values = power ** np.float32(cfg.power / 2.0)
            mel = _banded_product(self._bands, values, out[:, at : at + len(chunk)])  # (n_mels, frames), in place
            if cfg.to_db:
                np.maximum(mel, np.float32(cfg.db_amin), out=mel)
                np.log10(mel, out=mel)
                mel *= np.float32(cfg.db_multiplier)
                np.maximum(mel, self._db_floor, out=mel)  # float32 log10(amin) may round below the exact floor
            at += len(chunk)
        return out


#: mel filters per product in :func:`_banded_product` (measured on the presets' filterbanks: 4-16 are
#: all near the best; 8 spends 7-14 % of the dense product's multiplications)
_FILTERS_PER_BAND = 8


def _filter_bands(basis: np.ndarray) -> list[tuple[int, int, int, int, np.ndarray]]:
    """``basis`` (filters, bins) cut into runs of :data:`_FILTERS_PER_BAND` consecutive filters, each with
    the range of bins where any of them is non-zero: ``(first filter, end, first bin, end, weights)``."""
    bands = []
    for a in range(0, basis.shape[0], _FILTERS_PER_BAND):
        b = min(a + _FILTERS_PER_BAND, basis.shape[0])
        cols = np.flatnonzero(basis[a:b].any(axis=0))
        c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)
        bands.append((a, b, c0, c1, np.ascontiguousarray(basis[a:b, c0:c1])))
    return bands


def _banded_product(bands, values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``basis @ values.T`` written into ``out`` (filters, frames) for the basis :func:`_filter_bands` cut, ``values``
    (frames, bins): each run of filters multiplies only its bins. A mel filter covers a few bins, so the dense product was ~90 % zeros
    (about a sixth of the CPU of files -> fusion64 features, decoding included); the sums are the same but for
    the order of float32 additions."""
    for a, b, c0, c1, weights in bands:
        if c1 > c0:
            np.matmul(weights, values[:, c0:c1].T, out=out[a:b])
        else:
            out[a:b] = 0.0  # filters with no weight (more mels than the bins can separate)
    return out


def frame_blocks(x: np.ndarray, n_fft: int, hop: int, half: int, mode: str) -> list[np.ndarray]:
    """The frames ``(k, n_fft)`` every ``hop`` samples of ``x`` padded by ``half`` on both sides (``numpy.pad``'s
    ``mode``), in order, as up to three blocks of views, without copying the signal: the frames that lie inside
    ``x`` are views of ``x`` itself (any strides: a channel of interleaved audio is read in place), only the few
    at each end are cut from a padded copy of the first / last samples (a few frames' worth)."""
    n = x.shape[-1]
    total = n + 2 * half
    if total < n_fft:
        return [np.zeros((0, n_fft), dtype=x.dtype)]
    n_frames = 1 + (total - n_fft) // hop
    first = -(-half // hop)  # the first frame that starts inside x
    last = (half + n - n_fft) // hop  # the last frame that ends inside x
    if not half or first > last:  # no padding, or no frame lies wholly inside x
        padded = np.pad(x, (half, half), mode=mode) if half else x
        return [np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]]
    blocks = []
    if first:
        head = np.pad(x[: half + n_fft + first * hop], (half, 0), mode=mode)
        blocks.append(np.lib.stride_tricks.sliding_window_view(head, n_fft)[::hop][:first])
    start = first * hop - half
    inside = x[start : (last * hop - half) + n_fft]
    blocks.append(np.lib.stride_tricks.sliding_window_view(inside, n_fft)[::hop])
    if last + 1 < n_frames:
        tail_start = (last + 1) * hop - half  # where the first tail frame starts in x
        cut = min(tail_start, n - half - 1)  # reflecting half samples at the end reads the last half + 1
        tail = np.pad(x[cut:], (0, half), mode=mode)
        blocks.append(np.lib.stride_tricks.sliding_window_view(tail, n_fft)[tail_start - cut :: hop][: n_frames - last - 1])
    return blocks
