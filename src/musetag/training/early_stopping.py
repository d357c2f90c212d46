"""Early stopping, joint and per class.

:class:`EarlyStopping` stops training after ``patience`` epochs without a better value of the
metric the task reports (PR-AUC-macro for tagging, accuracy for genre).

:class:`PerClassEarlyStopping` (AMLAG 2019, after Caruana 1998): every tag keeps the output of the
epoch with its own lowest validation loss; the final predictions take each tag's column from that
tag's best epoch. ``update`` returns which tags improved at this epoch so the caller can store
those columns (and the weights needed to recompute them).
"""
from __future__ import annotations

import math

import numpy as np


class EarlyStopping:
    def __init__(self, patience: int, mode: str = "max") -> None:
        self.patience = int(patience)
        self.mode = mode
        self.best = -math.inf if mode == "max" else math.inf
        self.best_epoch = -1
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value > self.best if self.mode == "max" else value < self.best

    def update(self, value: float, epoch: int) -> bool:
        """Record this epoch's value; True when it is the best so far."""
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = float(value), int(epoch), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])


class PerClassEarlyStopping:
    """Per-tag best epoch by validation loss, and the composite predictions built from them."""

    def __init__(self, n_classes: int) -> None:
        self.n_classes = int(n_classes)
        self.best_loss = np.full(self.n_classes, np.inf)
        self.best_epoch = np.full(self.n_classes, -1, dtype=np.int64)
        self.predictions: dict[str, np.ndarray] = {}

    def update(self, per_class_loss, epoch: int) -> np.ndarray:
        """Record this epoch's per-tag validation losses; returns the boolean mask of tags whose
        loss is the lowest so far (their best epoch becomes ``epoch``)."""
        loss = np.asarray(per_class_loss, dtype=np.float64)
        if loss.shape != (self.n_classes,):
            raise ValueError(f"expected {self.n_classes} per-class losses, got shape {loss.shape}")
        improved = np.isfinite(loss) & (loss < self.best_loss)
        self.best_loss[improved] = loss[improved]
        self.best_epoch[improved] = epoch
        return improved

    def store(self, split: str, predictions: np.ndarray, improved: np.ndarray) -> None:
        """Copy the improved tags' columns of this epoch's ``predictions`` for ``split``."""
        predictions = np.asarray(predictions)
        if split not in self.predictions:
            self.predictions[split] = np.zeros_like(predictions, dtype=np.float32)
        self.predictions[split][:, improved] = predictions[:, improved]

    def composite(self, split: str) -> np.ndarray:
        return self.predictions[split]

    def epochs_in_use(self) -> list[int]:
        return sorted({int(e) for e in self.best_epoch if e >= 0})

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss.copy(), "best_epoch": self.best_epoch.copy(),
                "predictions": {k: v.copy() for k, v in self.predictions.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.best_loss = np.asarray(state["best_loss"], dtype=np.float64)
        self.best_epoch = np.asarray(state["best_epoch"], dtype=np.int64)
        self.predictions = {k: np.asarray(v) for k, v in state["predictions"].items()}
