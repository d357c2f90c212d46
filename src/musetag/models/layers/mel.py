"""Log-mel spectrogram as a model layer, with the short-time Fourier transform written as a strided
1-D convolution against windowed cosine and sine kernels (so the whole model, front end included,
exports to ONNX). Mel filters come from ``librosa.filters.mel``; the result matches
``librosa.feature.melspectrogram(center=False)`` followed by ``power_to_db``.

Used by the SoundFusion fusion model (Ausilio, Keshavarz, Prodan), whose 2-D branch reads a mel
spectrogram and whose 1-D branch reads the raw waveform of the same clip.
"""
from __future__ import annotations

import math

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ConvMelSpectrogram(nn.Module):
    """``(batch, C, samples) -> (batch, C, n_mels, frames)`` log-mel (dB, floored at ``amin``)."""

    def __init__(self, sample_rate: int = 22050, n_fft: int = 1024, hop_length: int = 512, n_mels: int = 64,
                 f_min: float = 0.0, f_max: float | None = None, amin: float = 1e-10) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.amin = amin
        n_bins = n_fft // 2 + 1
        window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, as scipy/librosa "hann"
        t = np.arange(n_fft)
        freqs = np.arange(n_bins)[:, None]
        cos = np.cos(2 * np.pi * freqs * t / n_fft) * window
        sin = -np.sin(2 * np.pi * freqs * t / n_fft) * window
        kernel = np.concatenate([cos, sin])[:, None, :].astype(np.float32)  # (2 * n_bins, 1, n_fft)
        self.register_buffer("kernel", torch.from_numpy(kernel), persistent=False)
        mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)
        self.register_buffer("mel", torch.from_numpy(mel.astype(np.float32)), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        batch, channels, samples = wave.shape
        spec = F.conv1d(wave.reshape(batch * channels, 1, samples), self.kernel, stride=self.hop_length)
        n_bins = self.kernel.shape[0] // 2
        power = spec[:, :n_bins] ** 2 + spec[:, n_bins:] ** 2  # (B*C, n_bins, frames)
        mel = torch.matmul(self.mel, power)  # (B*C, n_mels, frames)
        db = 10.0 * torch.log10(torch.clamp(mel, min=self.amin))
        return db.reshape(batch, channels, self.n_mels, -1)

    def n_frames(self, samples: int) -> int:
        return (samples - self.n_fft) // self.hop_length + 1


class _Spectrogram(nn.Module):
    """Holds the analysis window (``window``, periodic Hann) of :class:`TorchaudioMelSpectrogram`."""

    def __init__(self, n_fft: int) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True, dtype=torch.float32))


class _MelScale(nn.Module):
    """Holds the filterbank ``fb``, shaped ``(1 + n_fft // 2, n_mels)`` (torchaudio's layout)."""

    def __init__(self, fb: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("fb", torch.from_numpy(np.ascontiguousarray(fb, dtype=np.float32)))


class TorchaudioMelSpectrogram(nn.Module):
    """torchaudio's ``MelSpectrogram`` followed by ``AmplitudeToDB``, with their defaults, without torchaudio.

    ``(batch, samples) -> (batch, n_mels, frames)`` dB: centred frames with reflect padding of
    ``n_fft // 2`` on both sides, hop ``n_fft // 2``, periodic Hann window of ``n_fft``, power 2,
    HTK mel filters without normalisation (``librosa.filters.mel(..., htk=True, norm=None)``, equal
    to torchaudio's ``melscale_fbanks`` to ~1e-6), then ``10 log10(max(x, 1e-10))`` (no ``top_db``).
    This is the front end inside the Won et al. 2020 models (``sota-music-tagging-models``).

    The buffers are named as in torchaudio (``spectrogram.window``, ``mel_scale.fb``) and are
    persistent, so upstream state dicts load key for key; a fresh module computes them itself.
    The STFT is ``torch.stft`` in eager mode and a strided convolution with windowed DFT kernels
    during an ONNX export (``stft_impl="auto"``), equal to float32 rounding.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, f_min: float = 0.0, f_max: float | None = 8000.0,
                 n_mels: int = 96, hop_length: int | None = None, amin: float = 1e-10, stft_impl: str = "auto") -> None:
        super().__init__()
        if stft_impl not in ("auto", "fft", "dft"):
            raise ValueError(f"stft_impl must be 'auto', 'fft' or 'dft', got {stft_impl!r}")
        self.sample_rate, self.n_fft, self.n_mels = int(sample_rate), int(n_fft), int(n_mels)
        self.hop_length = int(hop_length or n_fft // 2)
        self.amin = float(amin)
        self.stft_impl = stft_impl
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min,
                                 fmax=f_max if f_max is not None else sample_rate / 2, htk=True, norm=None)
        self.spectrogram = _Spectrogram(n_fft)
        self.mel_scale = _MelScale(fb.T)

    def _power(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, padded samples) -> (batch, 1 + n_fft // 2, frames)`` power spectrum."""
        impl = self.stft_impl
        if impl == "auto":
            from musetag.features.frontend import _exporting

            impl = "dft" if _exporting() else "fft"
        window = self.spectrogram.window
        if impl == "fft":
            spec = torch.stft(x, n_fft=self.n_fft, hop_length=self.hop_length, window=window, center=False,
                              return_complex=True)
            return spec.real.square() + spec.imag.square()
        n_freq = self.n_fft // 2 + 1
        n = torch.arange(self.n_fft, dtype=torch.float64)
        k = torch.arange(n_freq, dtype=torch.float64)
        angle = 2 * math.pi * torch.outer(k, n) / self.n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=0).to(window.dtype) * window  # (2F, n_fft)
        frames = F.conv1d(x.unsqueeze(1), basis.unsqueeze(1).to(x.device), stride=self.hop_length)
        return frames[:, :n_freq].square() + frames[:, n_freq:].square()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        half = self.n_fft // 2
        x = F.pad(wave.unsqueeze(1), (half, half), mode="reflect").squeeze(1)
        power = self._power(x)  # (batch, n_freq, frames)
        mel = torch.matmul(power.transpose(1, 2), self.mel_scale.fb).transpose(1, 2)  # (batch, n_mels, frames)
        return 10.0 * torch.log10(torch.clamp(mel, min=self.amin))

    def n_frames(self, samples: int) -> int:
        return 1 + int(samples) // self.hop_length

    @property
    def rf_geometry(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(kernel, stride)`` over samples, for :func:`musetag.models.receptive_field`."""
        return (self.n_fft,), (self.hop_length,)
