"""One epoch of training (:func:`train_epoch`): augment, forward, loss, backward, clip, step;
co-teaching when a peer network is configured; mid-epoch checkpoints."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from musetag.errors import MusetagError
from musetag.training import distributed as D
from musetag.training.coteaching import coteaching_losses, forget_rate_at


def train_epoch(epoch: int, *, models, optimizers, schedules, loader, sampler, loss_fn, augment, cfg, data,
                 device, dist, autocast, scaler, state, save_mid_epoch) -> float:
    for m in models:
        m.train()
    augment.train()
    per_rank_batch = loader.batch_size
    n_items = len(sampler.order())
    steps_per_epoch = max(1, (n_items // per_rank_batch) if cfg.data.drop_last else -(-n_items // per_rank_batch))
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    forget = forget_rate_at(epoch, cfg.coteaching.forget_rate, cfg.coteaching.num_gradual,
                            cfg.coteaching.exponent) if len(models) > 1 else 0.0
    from tqdm.auto import tqdm

    bar = tqdm(total=steps_per_epoch, initial=state.step, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not (cfg.progress and dist.is_main), leave=False, dynamic_ncols=True)
    step = state.step
    for batch in loader:
        if step >= steps_per_epoch:
            break
        progress = step / steps_per_epoch
        for opt, sched in zip(optimizers, schedules):
            sched.apply(opt, epoch, progress, steps_per_epoch)
        rng = np.random.default_rng([cfg.seed, epoch, step, dist.rank, 31337])
        x = batch["x"].to(device, non_blocking=True)
        y = batch["y"].to(device)
        x, y = augment(x, y, rng)
        with autocast():
            logits = [_forward_train(m, x) for m in models]
        if len(models) == 1:
            loss = _loss(loss_fn, logits[0], y, "mean")
            losses = [loss]
        else:
            la = _loss(loss_fn, logits[0], y, "sample")
            lb = _loss(loss_fn, logits[1], y, "sample")
            loss_a, loss_b, _ = coteaching_losses(la, lb, forget)
            losses = [loss_a, loss_b]
            loss = loss_a
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        total = sum(losses)
        if scaler is not None:
            scaler.scale(total).backward()
        else:
            total.backward()
        for m, opt in zip(models, optimizers):
            if scaler is not None:
                scaler.unscale_(opt)
            if cfg.optim.grad_clip > 0:
                if cfg.optim.grad_clip_mode == "value":
                    torch.nn.utils.clip_grad_value_(m.parameters(), cfg.optim.grad_clip)
                else:
                    torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.optim.grad_clip)
            if scaler is not None:
                scaler.step(opt)
            else:
                opt.step()
        if scaler is not None:
            scaler.update()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise MusetagError(
                f"training loss became {value} at epoch {epoch + 1}, step {step + 1}; lower optim.lr "
                f"(now {optimizers[0].param_groups[0]['lr']:.3g}) or set optim.grad_clip"
            )
        state.partial["loss_sum"] += value * x.shape[0]
        state.partial["count"] += x.shape[0]
        step += 1
        state.step = step
        state.global_step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{state.partial['loss_sum'] / max(1, state.partial['count']):.4f}")
        if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step < steps_per_epoch:
            save_mid_epoch()
    bar.close()
    loss_sum = D.all_reduce_mean(state.partial["loss_sum"], dist)
    count = D.all_reduce_mean(state.partial["count"], dist)
    return loss_sum / max(1e-12, count)


class WithSegments(nn.Module):
    """Training view of a model with an auxiliary output: AMLAG's MobileNetV2 with self-attention
    has ``forward_with_segments(x) -> (logits, segment_logits)``; the loss is the mean of the loss
    on the attention output and on the per-segment MobileNetV2 predictions averaged over segments
    (the paper's "combined loss"; (loss1 + loss2) / 2 in the authors' submission2/solver.py). Wrapping it as a module keeps DDP's gradient hooks on this forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        logits, segment_logits = self.model.forward_with_segments(x)
        if segment_logits.dim() == 3:  # (batch, segments, n_classes) -> (batch, n_classes)
            segment_logits = segment_logits.mean(dim=1)
        return logits, segment_logits


def _forward_train(model: nn.Module, x: torch.Tensor):
    return model(x)


def _loss(loss_fn, logits, y, reduction):
    if isinstance(logits, (tuple, list)):
        # the mean, as AMLAG's own code: loss = (loss1 + loss2) / 2 (submission2/solver.py); a sum
        # would double the step of the SGD phase (switch_lr)
        return sum(loss_fn(z, y, reduction=reduction) for z in logits) / len(logits)
    return loss_fn(logits, y, reduction=reduction)
