"""Optimisers and learning-rate schedules from the seeds.

- SGD with Nesterov momentum and a cosine decay (Bour 2021: lr 0.5, weight decay 2e-5, 200 epochs).
- Adam / AMSGrad with a plateau schedule (x0.1 after 5 epochs without a lower validation loss;
  AMLAG 2019, SELAB-HCMUS 2021).
- Switching from Adam to SGD (Nesterov) at a given epoch (AMLAG 2019, after Keskar & Socher 2017).
- Linear warm-up over the first steps; cosine restarts for snapshot ensembles; an SWA phase.

:class:`LRSchedule` computes the learning rate as a pure function of (epoch, fraction of the epoch)
plus the small plateau state, so resuming a run reproduces it exactly; its ``state_dict`` holds that
state. It sets ``lr`` on every parameter group of the optimiser it is given.
"""
from __future__ import annotations

import math

import torch

from musetag.errors import ConfigError


def build_optimizer(params, optim_cfg, *, name: str | None = None, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimiser named in ``optim`` (``name``/``lr`` override it: the Adam->SGD switch)."""
    name = name or optim_cfg.name
    lr = optim_cfg.lr if lr is None else lr
    wd = optim_cfg.weight_decay
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=optim_cfg.momentum, weight_decay=wd,
                               nesterov=bool(optim_cfg.nesterov and optim_cfg.momentum > 0))
    betas = tuple(optim_cfg.betas)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "amsgrad":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd, amsgrad=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd)
    raise ConfigError(f"optim.name = {name!r} is not valid; choose one of: sgd, adam, adamw, amsgrad")


class LRSchedule:
    """Learning rate for (epoch, progress within the epoch).

    ``lr = base_lr * warmup(t) * decay(epoch)``, where ``base_lr`` is ``optim.lr`` (``switch_lr``
    once the optimiser was switched to SGD), then replaced by the SWA schedule from ``swa_start``
    when ``swa_lr`` > 0 (cosine annealing to ``swa_lr`` over ``anneal_epochs``, then constant,
    like ``torch.optim.swa_utils.SWALR``).
    """

    def __init__(self, schedule_cfg, *, epochs: int, base_lr: float, swa_start: int | None = None,
                 swa_lr: float = 0.0, swa_anneal_epochs: int = 5) -> None:
        self.cfg = schedule_cfg
        self.epochs = int(epochs)
        self.base_lr = float(base_lr)
        self.swa_start = swa_start
        self.swa_lr = float(swa_lr)
        self.swa_anneal_epochs = max(1, int(swa_anneal_epochs))
        # plateau state
        self.plateau_scale = 1.0
        self.best = math.inf
        self.bad_epochs = 0

    # -- the decay factor --------------------------------------------------------------------
    def decay(self, epoch: int, progress: float = 0.0) -> float:
        """The factor on ``base_lr`` at ``epoch`` (0-based); ``progress`` (0-1 within the epoch) is used by
        ``cosine_restarts`` only, which anneals every step as snapshot ensembles do (Huang et al. 2017): per
        epoch, a cycle of one epoch (``--set epochs=5`` on a 5-cycle recipe) never left its top rate."""
        c = self.cfg
        name = c.name
        if name == "constant":
            return 1.0
        if name == "cosine":
            t_max = c.t_max or self.epochs
            e = min(epoch, t_max)
            floor = c.min_lr / self.base_lr if self.base_lr else 0.0
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * e / t_max))
        if name == "cosine_restarts":
            length = max(1, self.epochs // max(1, c.cycles))
            e = (epoch % length if epoch < length * c.cycles else length - 1) + min(max(progress, 0.0), 1.0)
            floor = c.min_lr / self.base_lr if self.base_lr else 0.0
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * e / length))
        if name == "step":
            return c.factor ** (epoch // c.step_size)
        if name == "plateau":
            return self.plateau_scale
        raise ConfigError(f"schedule.name = {name!r} is not valid")

    def lr_at(self, epoch: int, progress: float = 0.0, steps_per_epoch: int = 1) -> float:
        if self.swa_start is not None and self.swa_lr > 0 and epoch >= self.swa_start:
            start_lr = self.base_lr * self.decay(self.swa_start)
            t = min(1.0, (epoch - self.swa_start + progress) / self.swa_anneal_epochs)
            return self.swa_lr + (start_lr - self.swa_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
        lr = self.base_lr * self.decay(epoch, progress)
        warm = self.cfg.warmup_epochs
        if warm > 0:
            steps = max(1, steps_per_epoch)
            done = (epoch + progress) * steps  # optimisation steps before this one
            total = warm * steps
            if done < total:
                # linear ramp, never exactly zero, and never above the rate it ramps to (a warm-up shorter than
                # one step, e.g. `--set epochs=N` shrinking it, made (done + 1) / total up to 50x)
                lr *= min(1.0, (done + 1.0) / total)
        return lr

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, progress: float = 0.0,
              steps_per_epoch: int = 1) -> float:
        lr = self.lr_at(epoch, progress, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # init.body_lr_scale (musetag.training.param_groups)
        return lr

    def end_epoch(self, val_loss: float | None) -> None:
        """Plateau bookkeeping (the only state): call once per epoch with the validation loss."""
        if self.cfg.name != "plateau" or val_loss is None or not math.isfinite(val_loss):
            return
        if val_loss < self.best * (1.0 - 1e-4):
            self.best = val_loss
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.cfg.patience:  # 'after N consecutive epochs without improvement'
                self.plateau_scale *= self.cfg.factor
                self.bad_epochs = 0

    def state_dict(self) -> dict:
        return {"base_lr": self.base_lr, "plateau_scale": self.plateau_scale, "best": self.best,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.base_lr = float(state["base_lr"])
        self.plateau_scale = float(state["plateau_scale"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
