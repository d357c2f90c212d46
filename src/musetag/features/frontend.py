"""The feature front end: a ``torch.nn.Module`` (STFT -> power -> mel -> dB) driven by a FeatureConfig.

It runs batched on CPU or GPU (move it with ``.to(device)``) and exports to ONNX. The window and the
mel filterbank (:mod:`musetag.features.filters`) are computed once and stored as buffers; the same
computation without torch is :class:`musetag.features.numpy_frontend.NumpyFeatureExtractor`.

Two exact STFT implementations are kept: ``torch.stft`` (FFT; the default, fast) and a
convolution with a windowed DFT basis (``stft_impl="dft"``), which uses only ``Conv1d`` and so
exports to any ONNX runtime; ``"auto"`` (default) picks the DFT path while an ONNX export is
running and the FFT otherwise. Both give the same result to float32 rounding.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musetag.errors import ConfigError
from musetag.features.filters import analysis_window, mel_filterbank, used_bins
from musetag.features.presets import FeatureConfig, require_stats


class FeatureExtractor(nn.Module):
    """Waveform -> features for one :class:`FeatureConfig`.

    ``forward(wave)``: ``(batch, samples)`` or ``(batch, channels, samples)`` float tensor at
    ``config.sample_rate`` -> ``(batch, channels, n_mels, frames)`` (mel) or
    ``(batch, channels, samples)`` (waveform). A mono config averages the input channels; a
    stereo config needs 2 channels (mono input is duplicated).

    ``normalize=True`` applies the config's ``(x - mean) / std`` at the end (for end-to-end
    exported models); by default features come out un-normalised.
    The Koutini frequency-coordinate channel is not added here: it is a model layer.
    """

    def __init__(self, config: FeatureConfig, *, normalize: bool = False, stft_impl: str = "auto") -> None:
        super().__init__()
        if stft_impl not in ("auto", "fft", "dft"):
            raise ConfigError(f"stft_impl must be 'auto', 'fft' or 'dft', got {stft_impl!r}")
        self.config = config
        self.stft_impl = stft_impl
        self.normalize = bool(normalize)
        if normalize:
            require_stats(config)
        if config.kind == "mel":
            self.register_buffer("window", torch.from_numpy(analysis_window(config)), persistent=False)
            basis = mel_filterbank(config)
            self.register_buffer("mel_basis", torch.from_numpy(basis), persistent=False)
            self._band = used_bins(basis)  # what the FFT path squares and projects
        if normalize:
            mean = torch.as_tensor(np.asarray(config.mean, dtype=np.float32)).reshape(-1)
            std = torch.as_tensor(np.asarray(config.std, dtype=np.float32)).reshape(-1)
            shape = (1, 1, -1, 1) if config.kind == "mel" else (1, 1, 1)
            if config.kind == "waveform" and mean.numel() > 1:
                raise ConfigError("waveform features take a single mean/std value")
            self.register_buffer("norm_mean", mean.reshape(shape), persistent=False)
            self.register_buffer("norm_std", std.reshape(shape), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.config.name}: {self.config.describe()}"

    # ------------------------------------------------------------------------------ forward
    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if wave.dim() == 2:
            wave = wave.unsqueeze(1)  # (batch, 1, samples)
        if wave.dim() != 3:
            raise ValueError(f"expected (batch, samples) or (batch, channels, samples), got {tuple(wave.shape)}")
        # float32 by default; float64 after ``.double()`` (the buffers set the precision)
        wave = wave.to(self.mel_basis.dtype if cfg.kind == "mel" else torch.float32)
        if cfg.mono:
            if wave.shape[1] != 1:
                wave = wave.mean(dim=1, keepdim=True)
        elif wave.shape[1] == 1:
            wave = wave.expand(-1, 2, -1)
        elif wave.shape[1] != 2:
            raise ValueError(f"config {cfg.name!r} is stereo: expected 1 or 2 channels, got {wave.shape[1]}")
        if cfg.kind == "waveform":
            out = wave  # (batch, channels, samples)
        else:
            out = self._mel(wave)  # (batch, channels, n_mels, frames)
        if self.normalize:
            out = (out - self.norm_mean) / self.norm_std
        return out

    def _mel(self, wave: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        batch, channels, samples = wave.shape
        if cfg.center and cfg.pad_mode == "reflect" and not _exporting() and samples <= cfg.n_fft // 2:
            raise ValueError(
                f"config {cfg.name!r} pads by reflection: it needs more than {cfg.n_fft // 2} samples, got {samples}; "
                "zero-pad short clips first (compute_features does)"
            )
        x = wave.reshape(batch * channels, samples)  # (batch*channels, samples)
        if cfg.pad_end:
            x = F.pad(x, (0, (-samples) % cfg.hop_length))
        if cfg.center:
            x = _centre_pad(x, cfg.n_fft // 2, cfg.pad_mode)
        power, (lo, hi) = self._power_spectrum(x)  # (batch*channels, bins lo..hi, frames)
        mel = torch.matmul(self.mel_basis[:, lo:hi], power)  # (batch*channels, n_mels, frames)
        if cfg.to_db:
            mel = cfg.db_multiplier * torch.log10(torch.clamp(mel, min=cfg.db_amin))
        if cfg.drop_first_frames:
            mel = mel[..., cfg.drop_first_frames :]
        mel = mel.reshape(batch, channels, cfg.n_mels, mel.shape[-1])
        if cfg.to_db and cfg.top_db is not None:
            peak = mel.amax(dim=(1, 2, 3), keepdim=True)
            mel = torch.maximum(mel, peak - cfg.top_db)
        return mel

    def _power_spectrum(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The power spectrogram's frequency bins ``lo..hi`` and ``(lo, hi)``: all bins on the DFT
        (export) path, only those the mel bands use on the FFT path."""
        cfg = self.config
        impl = self.stft_impl
        if impl == "auto":
            impl = "dft" if _exporting() else "fft"
        band = (0, cfg.n_fft // 2 + 1)
        if impl == "fft":
            spec = torch.stft(
                x, n_fft=cfg.n_fft, hop_length=cfg.hop_length, window=self.window, center=False, return_complex=True
            )
            band = self._band
            spec = spec[:, band[0] : band[1]]
            real, imag = spec.real, spec.imag  # strided views, no copies
            power = torch.mul(real, real).addcmul_(imag, imag)  # one pass: 2x the speed of square() + square()
        else:
            basis = self._dft_basis(x.device)  # (2 * n_freq, 1, n_fft)
            frames = F.conv1d(x.unsqueeze(1), basis, stride=cfg.hop_length)  # (N, 2 * n_freq, frames)
            n_freq = cfg.n_fft // 2 + 1
            power = frames[:, :n_freq].square() + frames[:, n_freq:].square()
        if cfg.power != 2.0:
            power = power.pow(cfg.power / 2.0)
        return power, band

    def _dft_basis(self, device) -> torch.Tensor:
        cfg = self.config
        n = torch.arange(cfg.n_fft, dtype=torch.float64)
        k = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64)
        angle = 2 * math.pi * torch.outer(k, n) / cfg.n_fft
        window = self.window.to(torch.float64).cpu()
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window], dim=0)
        return basis.to(torch.float32).unsqueeze(1).to(device)

    def n_frames(self, n_samples: int) -> int:
        return self.config.n_frames(n_samples)


def _centre_pad(x: torch.Tensor, half: int, mode: str) -> torch.Tensor:
    """``(N, samples)`` padded by ``half`` on both sides as ``F.pad(mode)``. Reflection is written
    into one buffer by hand outside export: torch's reflect kernel costs 2x a copy on long signals."""
    if mode != "reflect" or _exporting() or x.shape[-1] <= half:
        return F.pad(x.unsqueeze(1), (half, half), mode=mode).squeeze(1)
    out = x.new_empty(x.shape[0], x.shape[-1] + 2 * half)
    out[:, half:-half] = x
    out[:, :half] = x[:, 1 : half + 1].flip(-1)
    out[:, -half:] = x[:, -half - 1 : -1].flip(-1)
    return out


def _exporting() -> bool:
    try:
        if torch.onnx.is_in_onnx_export():
            return True
    except Exception:  # pragma: no cover
        pass
    compiler = getattr(torch, "compiler", None)
    is_exporting = getattr(compiler, "is_exporting", None)
    return bool(is_exporting and is_exporting())
