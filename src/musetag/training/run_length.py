"""Lengths in epochs follow the run's length when ``--set epochs=N`` shortens or lengthens a recipe.

A recipe states its schedule for its own length (Bour 2021: ``epochs = 200`` with a cosine over
``schedule.t_max = 200``). Overriding ``epochs`` alone used to leave those at 200, so a 4-epoch run
trained at the full learning rate throughout. :func:`follow_epochs` scales every epoch count the
recipe set (:data:`EPOCH_KEYS`) by ``N / recipe epochs`` when ``epochs`` is overridden and that key
is not overridden too; fractions of the run (``swa.length``, ``snapshots.count`` cycles) already
follow. A recipe run at its own length is unchanged. :func:`describe_schedule` is the line the
training log starts with: the resolved schedule, SWA phase and snapshot epochs (1-based).
"""
from __future__ import annotations

import logging

log = logging.getLogger("musetag.train")

#: (section, key, is_integer): epoch counts that describe a point or span of the recipe's run
EPOCH_KEYS = (
    ("schedule", "t_max", True),
    ("schedule", "step_size", True),
    ("schedule", "warmup_epochs", False),
    ("swa", "anneal_epochs", True),
    ("optim", "switch_to_sgd_epoch", True),
    ("coteaching", "num_gradual", True),
    ("init", "freeze_epochs", True),
)

DEFAULT_EPOCHS = 10  # TrainConfig.epochs: a recipe without 'epochs' states its lengths for 10


def follow_epochs(before: dict, after: dict, set_keys: set[str]) -> dict:
    """``after`` (the config table with ``--set`` applied to ``before``, the recipe's) with the
    recipe's epoch counts scaled to the new ``epochs``; the changes are logged."""
    old = before.get("epochs", DEFAULT_EPOCHS)
    new = after.get("epochs", DEFAULT_EPOCHS)
    if ("epochs" not in set_keys or not isinstance(old, int) or not isinstance(new, int) or old <= 0 or new <= 0
            or old == new):
        return after  # (an invalid new length is refused by the config's checks, with nothing scaled or logged first)
    ratio = new / old
    changes = []
    for section, key, integer in EPOCH_KEYS:
        if f"{section}.{key}" in set_keys or section in set_keys:
            continue
        value = (before.get(section) or {}).get(key) if isinstance(before.get(section), dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            continue
        scaled = max(1, round(value * ratio)) if integer else round(value * ratio, 4)
        if scaled != value:
            after = {**after, section: {**after.get(section, {}), key: scaled}}
            changes.append(f"{section}.{key} {value:g} -> {scaled:g}")
    if changes:
        log.info("epochs = %d (the recipe's %d): %s follow the run's length (set them with --set to keep them)",
                 new, old, ", ".join(changes))
    return after


def describe_schedule(cfg, swa_start: int | None, snapshot_epochs: list[int]) -> str:
    """The resolved run length, learning-rate schedule, SWA phase and snapshots, epochs 1-based."""
    s = cfg.schedule
    parts = [f"{cfg.epochs} epochs", f"optimiser {cfg.optim.name} lr {cfg.optim.lr:g}"]
    if s.name == "cosine":
        parts.append(f"cosine schedule over {s.t_max or cfg.epochs} epochs to {s.min_lr:g}")
    elif s.name == "cosine_restarts":
        parts.append(f"{s.cycles} cosine cycles of {max(1, cfg.epochs // max(1, s.cycles))} epochs")
    elif s.name == "step":
        parts.append(f"x{s.factor:g} every {s.step_size} epochs")
    elif s.name == "plateau":
        parts.append(f"x{s.factor:g} after {s.patience} epochs without a lower validation loss")
    else:
        parts.append("constant learning rate")
    if s.warmup_epochs:
        parts.append(f"warm-up {s.warmup_epochs:g} epochs")
    if cfg.optim.switch_to_sgd_epoch:
        parts.append(f"SGD from epoch {cfg.optim.switch_to_sgd_epoch + 1}")
    if swa_start is not None:
        parts.append(f"SWA over epochs {swa_start + 1}-{cfg.epochs}"
                     + (f" (lr {cfg.swa.lr:g} after {cfg.swa.anneal_epochs} epochs)" if cfg.swa.lr > 0 else ""))
    if snapshot_epochs:
        parts.append("snapshots after epochs " + ", ".join(str(e + 1) for e in snapshot_epochs))
    if cfg.validate_every > 1:
        parts.append(f"validation every {cfg.validate_every} epochs")
    return "; ".join(parts)
