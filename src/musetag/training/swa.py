"""Stochastic weight averaging and snapshot ensembles (Koutini 2019, Bour 2021).

:class:`SWA` wraps ``torch.optim.swa_utils.AveragedModel``: the weights are averaged at the end of
every epoch from ``start_epoch`` on (the last ``length`` fraction of the epochs), and
:meth:`SWA.finalize` recomputes the batch-norm statistics of the averaged weights over the training
data with ``torch.optim.swa_utils.update_bn``.

:class:`Snapshots` decides at which epochs a snapshot is taken (the end of each of ``count`` equal
cycles of training) and averages the snapshots' predictions.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, update_bn


def swa_start_epoch(epochs: int, length: float) -> int:
    """First epoch (0-based) whose weights enter the average: the last ``length`` of training
    (Bour: 200 epochs, length 0.2 -> epochs 160..199)."""
    n = max(1, int(round(epochs * length)))
    return max(0, epochs - n)


class SWA:
    def __init__(self, model: torch.nn.Module, *, epochs: int, length: float) -> None:
        self.start_epoch = swa_start_epoch(epochs, length)
        self.averaged = AveragedModel(model)
        self.bn_updated = False

    @property
    def n_averaged(self) -> int:
        return int(self.averaged.n_averaged.item())

    def update(self, model: torch.nn.Module, epoch: int) -> bool:
        """Add the model's weights to the average if ``epoch`` is in the SWA phase."""
        if epoch < self.start_epoch:
            return False
        self.averaged.update_parameters(model)
        self.bn_updated = False
        return True

    def finalize(self, inputs: Iterable[torch.Tensor], device: torch.device | str = "cpu") -> torch.nn.Module:
        """Recompute batch-norm statistics over ``inputs`` (training batches, no augmentation)
        and return the averaged network (``AveragedModel.module``)."""
        update_bn(inputs, self.averaged, device=torch.device(device))
        self.bn_updated = True
        return self.averaged.module

    def state_dict(self) -> dict:
        return {"averaged": self.averaged.state_dict(), "start_epoch": self.start_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state["averaged"])
        self.start_epoch = int(state["start_epoch"])


class Snapshots:
    """Snapshot epochs: the last epoch of each of ``count`` equal cycles."""

    def __init__(self, count: int, epochs: int) -> None:
        self.count = int(count)
        self.epochs = int(epochs)
        if self.count:
            length = self.epochs // self.count
            self.epochs_at = [length * (k + 1) - 1 for k in range(self.count - 1)] + [self.epochs - 1]
        else:
            self.epochs_at = []

    def is_snapshot(self, epoch: int) -> bool:
        return epoch in self.epochs_at

    def index(self, epoch: int) -> int:
        return self.epochs_at.index(epoch)

    @staticmethod
    def average(predictions: list[np.ndarray]) -> np.ndarray:
        if not predictions:
            raise ValueError("no snapshot predictions to average")
        return np.mean(np.stack(predictions), axis=0)
