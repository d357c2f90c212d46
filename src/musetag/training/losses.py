"""Losses on logits (models never apply a sigmoid or softmax themselves).

- ``bce``: binary cross-entropy with logits (multilabel).
- ``wbce``: Bour (2021) weighted BCE: for tag ``i`` with training-set frequency ``p_i``, positives
  weigh ``2 / (1 + p_i)`` and negatives ``2 p_i / (1 + p_i)``.
- ``focal``: binary focal loss (Lin et al. 2017) with ``alpha = 0.25``, ``gamma = 2`` by default.
- ``ce``: cross-entropy for single-label (multiclass) tasks; also accepts soft (mixed-up) targets.
- ``mse``, ``ccc``: regression (mean squared error; 1 - Lin's concordance correlation per target).

Every loss takes ``reduction``: ``"mean"``, ``"none"`` (per element: ``(batch, n_tags)`` for the
binary losses, ``(batch,)`` for ``ce``) or ``"sample"`` (``(batch,)``, the mean over tags), which
co-teaching and per-class early stopping use.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musetag.errors import ConfigError

REDUCTIONS = ("mean", "none", "sample")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sample":
        return loss.mean(dim=1) if loss.dim() > 1 else loss
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


class BCELoss(nn.Module):
    """Binary cross-entropy on logits."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
        return _reduce(loss, reduction)


class WeightedBCELoss(nn.Module):
    """Bour (2021), section 3: per-tag positive weight ``2/(1+p)`` and negative weight ``2p/(1+p)``,
    ``p`` being the tag's frequency among training tracks."""

    def __init__(self, tag_frequency) -> None:
        super().__init__()
        p = torch.as_tensor(tag_frequency, dtype=torch.float32).clamp(0.0, 1.0)
        if p.dim() != 1:
            raise ConfigError(f"wbce: tag frequencies must be a 1-D vector, got shape {tuple(p.shape)}")
        self.register_buffer("pos_weight", 2.0 / (1.0 + p))
        self.register_buffer("neg_weight", 2.0 * p / (1.0 + p))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        logits, targets = logits.float(), targets.float()
        # log(sigmoid(x)) and log(1 - sigmoid(x)) computed stably from the logits
        log_p = F.logsigmoid(logits)
        log_not_p = F.logsigmoid(-logits)
        loss = -(self.pos_weight * targets * log_p + self.neg_weight * (1.0 - targets) * log_not_p)
        return _reduce(loss, reduction)


class FocalLoss(nn.Module):
    """Binary focal loss on logits: ``-alpha_t (1 - p_t)^gamma log(p_t)``."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        logits, targets = logits.float(), targets.float()
        ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * targets + (1.0 - p) * (1.0 - targets)
        loss = ce * (1.0 - p_t).pow(self.gamma)
        if self.alpha >= 0:
            alpha_t = self.alpha * targets + (1.0 - self.alpha) * (1.0 - targets)
            loss = alpha_t * loss
        return _reduce(loss, reduction)


class CrossEntropyLoss(nn.Module):
    """Cross-entropy on logits; targets are class indices ``(batch,)`` or class distributions
    ``(batch, n_classes)`` (mixup)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        logits = logits.float()
        if targets.dim() == 1:
            targets = targets.long()
        else:
            targets = targets.float()
        loss = F.cross_entropy(logits, targets, reduction="none", label_smoothing=self.label_smoothing)
        if reduction == "none":
            return loss
        return _reduce(loss, "sample" if reduction == "sample" else "mean")


def tag_frequency(targets) -> torch.Tensor:
    """Frequency of each tag (column) in a multi-hot ``(tracks, tags)`` training matrix."""
    t = torch.as_tensor(targets, dtype=torch.float32)
    if t.dim() != 2 or t.shape[0] == 0:
        raise ConfigError("wbce needs a non-empty (tracks, tags) training target matrix")
    return t.mean(dim=0)


def build_loss(name: str, *, task: str, train_targets=None, focal_alpha: float = 0.25,
               focal_gamma: float = 2.0, label_smoothing: float = 0.0) -> nn.Module:
    """The loss named in the config, checked against the task."""
    if name == "auto":
        name = {"multiclass": "ce", "regression": "mse"}.get(task, "bce")
    from musetag.training.recipe_checks import loss_mismatch

    why = loss_mismatch(name, task) if name in ("bce", "wbce", "focal", "ce", "mse", "ccc") else None
    if why:
        raise ConfigError(why)
    if name in ("mse", "ccc"):  # regression

        return MSELoss() if name == "mse" else CCCLoss()
    if name == "bce":
        return BCELoss()
    if name == "wbce":
        if train_targets is None:
            raise ConfigError("loss.name = 'wbce' needs the training targets to compute tag frequencies")
        return WeightedBCELoss(tag_frequency(train_targets))
    if name == "focal":
        return FocalLoss(focal_alpha, focal_gamma)
    if name == "ce":
        return CrossEntropyLoss(label_smoothing)
    raise ConfigError(f"loss.name = {name!r} is not valid; choose one of: auto, bce, wbce, focal, ce, mse, ccc")


# -- regression ---------------------------------------------------------------------------------
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
