"""The state one training run shares between its stages (:mod:`~musetag.training.loop`).

:class:`Run` holds a run's fixed parts (config, folder, device, data) and the objects the epochs
update (networks, optimisers, strategies); :class:`State` is what changes and is saved in
``checkpoints/last.pt``. :func:`checkpoint_meta` is what every checkpoint says about itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from musetag.training import checkpoint as ckpt
from musetag.training import distributed as D
from musetag.training.config import TrainConfig
from musetag.training.data import TrainingData
from musetag.training.evaluation import EvalWindows, predict
from musetag.training.timing import PhaseTimer


@dataclass
class RunResult:
    """What :func:`~musetag.training.loop.train` returns: the run folder and the final scores
    (``best_epoch`` counts from 1, as the log does; 0 when no epoch was validated)."""

    run_dir: Path
    final: str
    metric: str
    best_epoch: int
    validation: dict
    test: dict
    epochs_run: int
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "final": self.final, "metric": self.metric,
                "best_epoch": self.best_epoch, "validation": self.validation, "test": self.test,
                "epochs_run": self.epochs_run}


class State:
    """Everything that changes during a run (and is saved in last.pt)."""

    def __init__(self) -> None:
        self.epoch = 0          # epochs completed
        self.step = 0           # batches completed inside the current epoch (mid-epoch checkpoints)
        self.partial = {"loss_sum": 0.0, "count": 0}
        self.history: list[dict] = []
        self.optimizer_name = ""
        self.global_step = 0
        # validation predictions kept from the epochs, so the final choice does not predict them again:
        # {"last": (epoch, array), "best": (epoch, array), "snapshot-K": (epoch, array)}
        self.val_preds: dict[str, tuple[int, np.ndarray]] = {}


def segment_meta(cfg: TrainConfig, data: TrainingData) -> dict:
    crop = cfg.data.eval_crop or cfg.data.crop
    key = "samples" if data.kind == "waveform" else "frames"
    return {key: int(crop), "hop": int(cfg.data.eval_hop or crop), "aggregation": cfg.data.aggregation,
            "max_segments": int(cfg.data.eval_max_segments)}


def checkpoint_meta(model: nn.Module, data: TrainingData, cfg: TrainConfig, thresholds=None) -> dict:
    plain = ckpt.unwrap(model)
    spec = getattr(plain, "musetag_config", None) or {"name": cfg.model.name, "args": dict(cfg.model.args)}
    return {"model": spec, "features": data.feature_config.to_dict(), "tags": list(data.tags),
            "task": data.task, "segment": segment_meta(cfg, data), "thresholds": thresholds}


@dataclass
class Run:
    """One run's fixed parts (set up once) and the objects the epochs update; setup -> epochs ->
    final candidates -> run folder share it."""

    cfg: TrainConfig
    run_dir: Path
    dist: D.DistInfo
    device: torch.device
    autocast: Any
    data: TrainingData
    metric: str
    t0: float
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    windows: EvalWindows | None = None              # evaluation windows, cut once per split and reused
    models: list = field(default_factory=list)       # the networks (model, co-teaching peer)
    weights: list = field(default_factory=list)      # their weights in the predictions
    freezers: list = field(default_factory=list)     # transfer: stage freezing, one per started network
    loss_fn: Any = None
    optimizers: list = field(default_factory=list)
    schedules: list = field(default_factory=list)
    swa: Any = None                                  # SWA | None
    snapshots: Any = None                            # Snapshots
    stopper: Any = None                              # EarlyStopping on the reported metric
    per_class: Any = None                            # PerClassEarlyStopping | None
    scaler: Any = None
    augment: Any = None
    state: State = field(default_factory=State)
    train_models: list = field(default_factory=list)  # the networks as trained (segments, DDP, compile)
    per_rank_batch: int = 0
    sampler: Any = None
    loader: Any = None
    stopped_early: bool = False

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def last_path(self) -> Path:
        return self.ckpt_dir / "last.pt"

    def predict(self, models, weights, split: str) -> np.ndarray:
        if self.windows is None:
            self.windows = EvalWindows(self.data, self.cfg)
        return predict(models, weights, self.data, split, self.cfg, self.device, self.dist, self.autocast,
                       windows=self.windows)

    def save(self, model, name: str, kind: str, epoch: int, metrics=None, thresholds=None, meta_model=None) -> None:
        """``checkpoints/<name>``: ``model``'s weights, described by ``meta_model`` (default: itself)."""
        meta = checkpoint_meta(meta_model if meta_model is not None else model, self.data, self.cfg, thresholds)
        ckpt.save_checkpoint(ckpt.model_payload(model, meta=meta, kind=kind, epoch=epoch, metrics=metrics),
                             self.ckpt_dir / name)


def jsonable(obj):
    """``obj`` with numpy scalars as Python numbers and non-finite floats as None (JSON null)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    return obj
