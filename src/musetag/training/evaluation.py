"""Track-level predictions of the validation and test tracks, and their scores.

Every evaluation (each validated epoch, each final candidate: best, last, SWA, snapshots) scores the
same tracks cut into the same windows, so :class:`EvalWindows` cuts each track of a split once
(:func:`~musetag.training.data.segments` of the normalised features) and keeps the windows in memory
up to ``data.eval_cache_mb`` megabytes (tracks past the budget are cut again each time).
:func:`predict` runs the networks over those windows and aggregates them per track;
:func:`should_validate` is the ``validate_every`` rule.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from musetag.training import distributed as D
from musetag.training.config import TrainConfig
from musetag.training.data import TrainingData, segments
from musetag.training.scoring import loss_value, score


class EvalWindows:
    """The evaluation windows ``(n, C, F, crop)`` of each track of a split, cut once and reused."""

    def __init__(self, data: TrainingData, cfg: TrainConfig) -> None:
        self.data = data
        self.crop = cfg.data.eval_crop or cfg.data.crop
        self.hop = cfg.data.eval_hop or self.crop
        self.max_segments = cfg.data.eval_max_segments
        self.budget = int(cfg.data.eval_cache_mb * 2**20)
        self.used = 0
        self.computed = 0  # windows cut (tracks), reuse included: the tests count them
        self._kept: dict[tuple[str, int], np.ndarray] = {}

    def get(self, split: str, index: int) -> np.ndarray:
        key = (split, index)
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        windows = segments(self.data.load(split, index), self.crop, self.hop, self.max_segments)
        self.computed += 1
        if self.used + windows.nbytes <= self.budget:
            windows = np.ascontiguousarray(windows)
            self._kept[key] = windows
            self.used += windows.nbytes
        return windows


@torch.no_grad()
def predict(models: list[nn.Module], weights: list[float], data: TrainingData, split: str, cfg: TrainConfig,
            device: torch.device, dist: D.DistInfo, autocast, *, windows: EvalWindows | None = None) -> np.ndarray:
    """Track-level probabilities ``(tracks, n_classes)`` for ``split`` (rows in dataset order).
    Each rank scores its share of the tracks; the result is gathered on every rank."""
    n = len(data.splits[split])
    n_out = data.n_classes
    if n == 0:
        return np.zeros((0, n_out), np.float32)
    windows = windows or EvalWindows(data, cfg)
    for m in models:
        m.eval()
    mine = list(range(dist.rank, n, dist.world_size)) if dist.enabled else list(range(n))
    results: dict[int, np.ndarray] = {}
    buffer: list[tuple[int, np.ndarray]] = []

    def flush():
        if not buffer:
            return
        x = torch.from_numpy(np.concatenate([b[1] for b in buffer])).to(device)
        counts = [b[1].shape[0] for b in buffer]
        mixed = None
        for model, w in zip(models, weights):
            if w == 0:
                continue
            outs = []
            for chunk in torch.split(x, cfg.data.eval_batch_size):
                with autocast():
                    outs.append(model(chunk).float())
            logits = torch.cat(outs)
            probs = aggregate(logits, counts, cfg.data.aggregation, data.task)
            mixed = probs * w if mixed is None else mixed + probs * w
        mixed = mixed / sum(w for w in weights if w)
        for (index, _), row in zip(buffer, mixed.cpu().numpy()):
            results[index] = row
        buffer.clear()

    pending = 0
    for index in mine:
        segs = windows.get(split, index)
        buffer.append((index, segs))
        pending += segs.shape[0]
        if pending >= cfg.data.eval_batch_size:
            flush()
            pending = 0
    flush()
    gathered = D.gather_objects(results, dist)
    out = np.zeros((n, n_out), np.float32)
    for part in gathered:
        for index, row in part.items():
            out[index] = row
    return out


def aggregate(logits: torch.Tensor, counts: list[int], how: str, task: str) -> torch.Tensor:
    act = ((lambda z: torch.softmax(z, dim=-1)) if task == "multiclass"
           else (lambda z: z) if task == "regression" else torch.sigmoid)  # regression: the values themselves
    rows = []
    for part in torch.split(logits, counts):
        if how == "max":
            rows.append(act(part).max(dim=0).values)
        else:
            rows.append(act(part).mean(dim=0))
    return torch.stack(rows)


def split_scores(preds: np.ndarray, data: TrainingData, split: str) -> dict:
    """The task's scores (and loss) of ``preds`` on ``split``; ``{}`` for an empty split."""
    targets = data.splits[split].targets
    if len(targets) == 0:
        return {}
    out = score(preds, targets, data.task)
    out["loss"] = loss_value(preds, targets, data.task)
    return out


def should_validate(epoch: int, epochs: int, every: int) -> bool:
    """``validate_every = k``: validate after epochs k, 2k, ... (1-based) and always after the last."""
    return every <= 1 or (epoch + 1) % every == 0 or epoch + 1 >= epochs
