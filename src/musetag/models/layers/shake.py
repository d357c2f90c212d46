"""Shake-shake regularisation (Gastaldi 2017, "Shake-Shake regularization", arXiv:1705.07485),
as used in the frequency-aware ResNets of Koutini et al. 2019.

Two residual branches are merged with a random convex combination ``alpha * a + (1 - alpha) * b``
in the forward pass (one ``alpha ~ U(0, 1)`` per example), while the backward pass scales the
gradients with an independently drawn ``beta``. At evaluation both weights are 0.5.
"""
from __future__ import annotations

import torch
from torch import nn


class _ShakeShakeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        shape = (a.shape[0],) + (1,) * (a.dim() - 1)
        alpha = torch.rand(shape, dtype=a.dtype, device=a.device)
        ctx.shape = shape
        return alpha * a + (1.0 - alpha) * b

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        beta = torch.rand(ctx.shape, dtype=grad.dtype, device=grad.device)
        return beta * grad, (1.0 - beta) * grad


def shake_shake(a: torch.Tensor, b: torch.Tensor, training: bool) -> torch.Tensor:
    """Merge two branch outputs: random (training, with gradients) or 0.5/0.5 (evaluation)."""
    if training and torch.is_grad_enabled():
        return _ShakeShakeFunction.apply(a, b)
    if training:  # training mode without autograd: still a random convex combination
        shape = (a.shape[0],) + (1,) * (a.dim() - 1)
        alpha = torch.rand(shape, dtype=a.dtype, device=a.device)
        return alpha * a + (1.0 - alpha) * b
    return 0.5 * (a + b)


class ShakeShake(nn.Module):
    """Module form of :func:`shake_shake`, following ``self.training``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return shake_shake(a, b, self.training)
