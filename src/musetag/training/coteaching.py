"""Co-teaching (Han et al. 2018), as used by SELAB-HCMUS at MediaEval 2021.

Two networks train together. In each mini-batch, each network ranks the samples by its own loss
and keeps the ``1 - forget_rate`` fraction with the smallest losses; the *peer* network is then
updated on the samples the other one kept. The forget rate ramps from 0 to its final value over
the first ``num_gradual`` epochs (``exponent`` shapes the ramp, 1 = linear), as in the paper.
SELAB-HCMUS used a forget rate of 0.05 with EfficientNet-B0 and ReXNet-100 as the two networks.
"""
from __future__ import annotations

import math

import torch


def forget_rate_at(epoch: int, forget_rate: float, num_gradual: int = 10, exponent: float = 1.0) -> float:
    """Forget rate for 0-based ``epoch``: ``forget_rate * min(epoch / num_gradual, 1) ** exponent``."""
    if num_gradual <= 0:
        return float(forget_rate)
    return float(forget_rate) * min(epoch / num_gradual, 1.0) ** exponent


def small_loss_indices(per_sample_loss: torch.Tensor, forget_rate: float) -> torch.Tensor:
    """Indices of the ``ceil((1 - forget_rate) * batch)`` samples with the smallest loss
    (at least one), in ascending order of loss."""
    n = per_sample_loss.shape[0]
    keep = max(1, int(math.ceil((1.0 - forget_rate) * n)))
    order = torch.argsort(per_sample_loss.detach(), stable=True)
    return order[:keep]


def coteaching_losses(loss_a: torch.Tensor, loss_b: torch.Tensor, forget_rate: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Given per-sample losses of networks A and B on the same batch, the losses to back-propagate:
    A is trained on the samples B finds easy, and B on those A finds easy."""
    keep_a = small_loss_indices(loss_a, forget_rate)
    keep_b = small_loss_indices(loss_b, forget_rate)
    update_a = loss_a[keep_b].mean()
    update_b = loss_b[keep_a].mean()
    info = {"kept": int(keep_a.numel()), "agreement": _overlap(keep_a, keep_b)}
    return update_a, update_b, info


def _overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    sa, sb = set(a.tolist()), set(b.tolist())
    return len(sa & sb) / max(1, len(sa))
