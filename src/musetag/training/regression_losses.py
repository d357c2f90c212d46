"""Losses for ``task = "regression"`` (outputs are the values themselves, no squashing).

- ``mse``: mean squared error per element.
- ``ccc``: ``1 - CCC`` per target over the batch (Lin's concordance correlation coefficient,
  ``2 cov(y, p) / (var(y) + var(p) + (mean(y) - mean(p))^2)``, population moments), the loss of the
  emotion-regression literature: it rewards agreement in scale and offset, not only correlation.
  It is a batch statistic: per-element and per-sample reductions fall back to the squared error's
  shape (co-teaching and per-class early stopping rank samples by it), the mean is ``1 - mean CCC``.
"""
from __future__ import annotations

import torch
from torch import nn

from musetag.training.losses import _reduce


class MSELoss(nn.Module):
    def forward(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return _reduce((logits.float() - targets.float()) ** 2, reduction)


def ccc_per_target(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lin's CCC of each column over the batch ``(batch, targets)`` -> ``(targets,)``."""
    pred, target = pred.float(), target.float()
    mp, mt = pred.mean(0), target.mean(0)
    vp, vt = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(0)
    return 2 * cov / (vp + vt + (mp - mt) ** 2).clamp_min(1e-12)


class CCCLoss(nn.Module):
    def forward(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if reduction != "mean":
            return _reduce((logits.float() - targets.float()) ** 2, reduction)
        return 1.0 - ccc_per_target(logits, targets).mean()
