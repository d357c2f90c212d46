"""A recipe fitted to its dataset's task before any audio or cache is read.

A recipe is written for one kind of task (a genre recipe trains with ``ce``, a Bour mood recipe with
``wbce``), but a user may point it at the other kind (a genre recipe on mood tags, a Bour recipe on
four emotion classes). Unless the user pins the loss (``--set loss.name=...``), the loss follows the
dataset's task as ``loss.name = "auto"`` does: ``ce`` for a multiclass task, ``bce`` for a multilabel
one, and one line says so. A pinned loss that does not fit the task is refused here, from the dataset
TOML alone (its ``task``), so the error comes before the manifest, the audio or the cache is touched.
"""
from __future__ import annotations

import logging

from musetag.errors import ConfigError

log = logging.getLogger(__name__)

#: the losses each task accepts (``auto`` fits both)
TASK_LOSSES = {"multiclass": ("ce",), "multilabel": ("bce", "wbce", "focal"), "regression": ("mse", "ccc")}
#: what ``auto`` (and a recipe's loss of the other task) becomes
AUTO_LOSS = {"multiclass": "ce", "multilabel": "bce", "regression": "mse"}


def set_keys(sets: list[str] | None) -> set[str]:
    """The keys a list of ``key=value`` overrides sets (what the user pinned)."""
    return {item.split("=", 1)[0].strip() for item in sets or [] if "=" in item}


def loss_mismatch(name: str, task: str) -> str | None:
    """Why loss ``name`` cannot train a ``task`` task (None when it can)."""
    if name == "auto" or name in TASK_LOSSES.get(task, ()):
        return None
    if task == "regression":
        return f"loss.name = {name!r} is for classes or tags; a regression task needs 'mse' or 'ccc' (or 'auto')"
    if name in TASK_LOSSES["regression"]:
        return f"loss.name = {name!r} is for regression; a {task} task needs {' or '.join(map(repr, TASK_LOSSES[task]))}"
    if task == "multiclass":
        return f"loss.name = {name!r} is for multilabel tagging; a multiclass task needs 'ce' (or 'auto')"
    return f"loss.name = {name!r} is for single-label tasks; use 'bce', 'wbce' or 'focal' for tagging"


def fit_to_task(cfg, *, pinned: set[str] | frozenset = frozenset(), quiet: bool = False):
    """``cfg`` (a TrainConfig) with its loss fitted to the dataset's task; reads only the dataset TOML.

    ``pinned``: the keys the user set explicitly (``--set``); a pinned ``loss.name`` is never changed,
    and one that does not fit the task raises :class:`ConfigError`.
    """
    if not cfg.data.dataset:
        return cfg
    from musetag.data.config import load_dataset_config

    dataset = load_dataset_config(cfg.data.dataset)
    task = dataset.task
    why = loss_mismatch(cfg.loss.name, task)
    if why is None:
        return cfg
    if "loss.name" in pinned:
        raise ConfigError(f"{why} ({dataset.where} has task = {task!r}); drop --set loss.name to let the loss "
                          f"follow the task, or set a {task} loss")
    new = AUTO_LOSS[task]
    if not quiet:
        log.info("recipe %s: loss %r is for %s tasks and %s is %s, so training uses %r "
                 "(pin a loss with --set loss.name=...)", cfg.recipe or "custom", cfg.loss.name,
                 "multiclass" if cfg.loss.name == "ce" else "regression" if cfg.loss.name in ("mse", "ccc")
                 else "multilabel", dataset.where, task, new)
    return cfg.replace({"loss": {"name": new}})
