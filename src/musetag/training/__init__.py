"""Training: typed configs and recipes, losses, augmentation, schedules, SWA, snapshots,
co-teaching, per-class early stopping, checkpoints, resume and DDP.

>>> import musetag
>>> result = musetag.train("demo", data="corpus/dataset.toml", out="runs/demo")
>>> result.validation["pr_auc_macro"]

``musetag.training.train(config, *, data=None, out=None, sets=None, resume=None)`` accepts a
:class:`TrainConfig`, a dict, a shipped recipe name or a TOML path. Everything a run produces is in
the run folder (see :mod:`musetag.training.loop`).
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "train": "musetag.training.loop:train",
    "RunResult": "musetag.training.loop:RunResult",
    "TrainConfig": "musetag.training.config:TrainConfig",
    "load_config": "musetag.training.recipes:load_config",
    "list_recipes": "musetag.training.recipes:list_recipes",
    "load_checkpoint": "musetag.training.checkpoint:load_checkpoint",
    "load_model": "musetag.training.checkpoint:load_model",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'musetag.training' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
