"""Frequency-dependent convolution (Bour 2021, "Frequency Dependent Convolutions for Music
Tagging", MediaEval 2021).

A 2-D convolution that stays translation invariant in time but has its own filter weights for
every output frequency position: the characteristic features of low, middle and high bands may
differ. Implemented as one grouped 1-D convolution over time: the ``kernel_freq`` input rows seen
by each output row are gathered into a group of channels, and group ``f`` holds the weights of
output row ``f``. The number of frequency positions is therefore fixed at construction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musetag.errors import ModelError
from musetag.models.layers.conv import conv_out_size


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class FrequencyDependentConv2d(nn.Module):
    """Like ``nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)`` on
    ``(batch, C, in_freq, T)``, but with ``out_freq`` independent weight sets along frequency:
    ``out_freq`` times the parameters of the shared convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        in_freq: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.in_freq = in_channels, out_channels, in_freq
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        kf, _ = self.kernel_size
        sf, _ = self.stride
        pf, _ = self.padding
        self.out_freq = conv_out_size(in_freq, kf, sf, pf)
        if self.out_freq < 1:
            raise ModelError(f"FrequencyDependentConv2d: {in_freq} frequency bins are too few for kernel {kf}")
        rows = torch.arange(self.out_freq).unsqueeze(1) * sf + torch.arange(kf).unsqueeze(0)
        self.register_buffer("rows", rows.reshape(-1), persistent=False)  # (out_freq * kf,)
        self.conv = nn.Conv1d(
            self.out_freq * in_channels * kf,
            self.out_freq * out_channels,
            self.kernel_size[1],
            stride=self.stride[1],
            padding=self.padding[1],
            groups=self.out_freq,
            bias=bias,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, n_freq, n_time = x.shape
        if n_freq != self.in_freq:
            raise ModelError(
                f"FrequencyDependentConv2d was built for {self.in_freq} frequency bins, got {n_freq}; "
                f"frequency-dependent weights need the number of mel bands the model was created with"
            )
        kf = self.kernel_size[0]
        pf = self.padding[0]
        x = F.pad(x, (0, 0, pf, pf))  # pad frequency only; time padding is the conv's
        x = x.index_select(2, self.rows)  # (B, C, out_freq * kf, T)
        x = x.reshape(batch, channels, self.out_freq, kf, n_time)
        x = x.permute(0, 2, 1, 3, 4).reshape(batch, self.out_freq * channels * kf, n_time)
        y = self.conv(x)  # (B, out_freq * C_out, T_out)
        y = y.reshape(batch, self.out_freq, self.out_channels, y.shape[-1])
        return y.permute(0, 2, 1, 3)  # (B, C_out, out_freq, T_out)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, in_freq={self.in_freq}, out_freq={self.out_freq}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        )
