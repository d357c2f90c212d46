"""Global max + average pooling over time, concatenated (Zhang et al. 2016, "Improved Music Genre
Classification with Convolutional Neural Networks", Interspeech 2016)."""
from __future__ import annotations

import torch
from torch import nn


class GlobalMaxAvgPool(nn.Module):
    """``(batch, C, ..., T) -> (batch, 2 * C)``: max and mean over every axis after the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return torch.cat([flat.amax(dim=2), flat.mean(dim=2)], dim=1)
