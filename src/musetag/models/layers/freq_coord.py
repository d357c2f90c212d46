"""Frequency-coordinate channel (Koutini et al. 2019, "Receptive-Field-Regularized CNN Variants for
Acoustic Scene Classification", DCASE 2019 / MediaEval 2019 frequency-aware ResNets; after
CoordConv, Liu et al. 2018).

Convolutions are translation-equivariant, so a filter cannot tell a low band from a high one.
Concatenating a channel whose value is the frequency position, linearly spaced in [-1, 1] from
the lowest to the highest band, gives every following convolution that information.
"""
from __future__ import annotations

import torch
from torch import nn


class FrequencyCoordinates(nn.Module):
    """``(batch, C, F, T) -> (batch, C + 1, F, T)``; the new last channel is ``-1 .. 1`` along F."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, n_freq, n_time = x.shape
        step = 2.0 / max(n_freq - 1, 1)
        coord = torch.arange(n_freq, dtype=x.dtype, device=x.device) * step - 1.0  # (F,)
        coord = coord.view(1, 1, n_freq, 1).expand(batch, 1, n_freq, n_time)
        return torch.cat([x, coord], dim=1)
