"""Log-mel spectrogram as a model layer, with the short-time Fourier transform written as a strided
1-D convolution against windowed cosine and sine kernels (so the whole model, front end included,
exports to ONNX). Mel filters come from ``librosa.filters.mel``; the result matches
``librosa.feature.melspectrogram(center=False)`` followed by ``power_to_db``.

Used by the SoundFusion fusion model (Ausilio, Keshavarz, Prodan), whose 2-D branch reads a mel
spectrogram and whose 1-D branch reads the raw waveform of the same clip.
"""
from __future__ import annotations

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
