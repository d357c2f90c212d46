"""The training loop, top to bottom: setup -> epochs -> final model -> run folder.

:func:`train` is ``musetag.train``. A run is :func:`_setup` (run folder, data, networks, optimisation,
resume, DDP wrappers, loader) -> :func:`_epochs` -> :func:`_final_candidates` -> :func:`_write`, sharing
one :class:`_Run`; each strategy is a small piece they call (``_maybe_switch_to_sgd``, ``_track_best``,
``_per_class_step``, and the SWA, snapshot, co-teaching and stage-freezing objects).

One epoch (:func:`_epoch`) is :func:`_train_epoch` (augment, forward, loss, backward, clip, step;
co-teaching when a peer network is configured), then :func:`_predict` on the validation tracks
(segments aggregated per track), then the bookkeeping: best epoch on the reported metric, SWA
averaging, snapshots, per-class early stopping, plateau schedule, metrics.jsonl and
``checkpoints/last.pt``. After the last epoch the final model (best / SWA / snapshots / per-class /
last) produces validation and test predictions in the dataset's row order, thresholds
are tuned on validation, and plots and ``summary.json`` are written.

Run folder (docs/CONTRACTS.md)::

    RUN_DIR/config.toml                    resolved config
    RUN_DIR/metrics.jsonl                  one JSON object per epoch
    RUN_DIR/summary.json                   final choice, best epoch, validation and test scores
    RUN_DIR/checkpoints/{last,best,swa}.pt (+ peer_best.pt, snapshot-K.pt, epochs/ for per-class)
    RUN_DIR/predictions/{validation,test}.npy and {validation,test}_targets.npy
    RUN_DIR/plots/training.png
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from musetag.errors import ConfigError, MusetagError
from musetag.outputs import check_writable
from musetag.training.lock import run_lock
from musetag.features.augment import BatchAugment
from musetag.training import checkpoint as ckpt
from musetag.training import distributed as D
from musetag.training import probe
from musetag.training.param_groups import param_groups
from musetag.training.config import TrainConfig, dump_toml, load_config, load_toml_config, resolved_final
from musetag.training.coteaching import coteaching_losses, forget_rate_at
from musetag.training.data import CropDataset, EpochSampler, TrainingData, collate, load_training_data, segments
from musetag.training.early_stopping import EarlyStopping, PerClassEarlyStopping
from musetag.training.losses import build_loss
from musetag.training.schedules import LRSchedule, build_optimizer
from musetag.training.scoring import loss_value, max_f1_thresholds, per_class_loss, reported_metric, score
from musetag.training.swa import SWA, Snapshots, swa_start_epoch

log = logging.getLogger("musetag.train")


@dataclass
class RunResult:
    """What :func:`train` returns: the run folder and the final scores."""

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


# ---------------------------------------------------------------------------------------------
# public entry points


def train(config: TrainConfig | dict | str | Path | None = None, *, data: str | Path | None = None,
          out: str | Path | None = None, sets: list[str] | None = None, resume: str | Path | None = None,
          training_data: TrainingData | None = None) -> RunResult:
    """Train a model; the Python form of ``musetag train``.

    ``config``: a :class:`TrainConfig`, a dict, a recipe name or a TOML path. ``data``: the dataset
    TOML (sets ``data.dataset``). ``out``: the run folder (sets ``out``). ``sets``: ``key=value``
    overrides. ``resume``: a run folder to continue from its ``checkpoints/last.pt`` (its
    ``config.toml`` is used; ``config`` must then be None).
    """
    if resume is not None:
        if config is not None:
            raise ConfigError("resume takes the run folder's own config.toml; do not pass a recipe too")
        run_dir = Path(resume)
        cfg = load_toml_config(run_dir / "config.toml")
        if sets:
            cfg = cfg.replace(sets=sets)
        cfg = cfg.replace({"out": str(run_dir)})
        if probe.route(cfg):
            raise ConfigError(f"{run_dir} is a probe run (fitted in seconds, nothing to resume); train it again "
                              "into a new --out folder")
        check_writable(run_dir, folder=True, flag="--resume")
        with run_lock(run_dir):
            if cfg.members:
                return _run_members(cfg, run_dir, training_data=training_data)
            return _run(cfg, run_dir, resume=True, training_data=training_data)
    overrides: dict[str, Any] = {}
    if data is not None:
        overrides["data"] = {"dataset": str(Path(data).resolve())}
    if out is not None:
        overrides["out"] = str(out)
    cfg = load_config(config, sets=sets, overrides=overrides)
    if cfg.data.dataset and not Path(cfg.data.dataset).is_absolute():
        cfg = cfg.replace({"data": {"dataset": str(Path(cfg.data.dataset).resolve())}})
    if not cfg.out:
        raise ConfigError("no run folder: pass --out RUN_DIR (or out= in Python)")
    run_dir = Path(cfg.out)
    check_writable(run_dir, folder=True)
    with run_lock(run_dir):  # checked under the lock: two processes cannot both find the folder free
        if (run_dir / "checkpoints" / "last.pt").exists():
            raise ConfigError(
                f"{run_dir} already holds a training run; continue it with `musetag train --resume {run_dir}` "
                "or choose another --out folder"
            )
        if probe.route(cfg):  # embeddings + probe: fitted by musetag.training.probe, not the epoch loop
            return probe.train_probe(cfg, run_dir)
        if cfg.members:
            # --set options apply to every member (except those choosing the members themselves)
            member_sets = [item for item in sets or [] if item.split("=", 1)[0].strip() not in ("members", "member_sets")]
            cfg = cfg.replace({"member_sets": member_sets})
            return _run_members(cfg, run_dir, training_data=training_data)
        return _run(cfg, run_dir, resume=False, training_data=training_data)


# ---------------------------------------------------------------------------------------------
# setup helpers


def _device(cfg: TrainConfig, dist: D.DistInfo) -> torch.device:
    if cfg.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank if dist.enabled else 0)
        return torch.device("cpu")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device = {cfg.device!r} but CUDA is not available here; use device = 'cpu' or 'auto'")
    if cfg.device == "cuda" and dist.enabled:
        return torch.device("cuda", dist.local_rank)
    return torch.device(cfg.device)


def _autocast(cfg: TrainConfig, device: torch.device):
    mode = cfg.amp
    if mode == "auto":
        mode = "fp16" if device.type == "cuda" else "off"
    if mode == "off":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    if dtype == torch.float16 and device.type != "cuda":
        raise ConfigError("amp = 'fp16' needs a CUDA device; use amp = 'bf16' on CPU")
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.default_rng([seed, epoch, rank, 104729]).integers(0, 2**62))


def _build_model(name: str, args: dict, data: TrainingData) -> nn.Module:
    from musetag.models import create_model

    args = dict(args)
    for reserved in ("n_classes", "in_channels"):
        if reserved in args:
            raise ConfigError(f"model.args.{reserved} is set from the dataset ({reserved} = "
                              f"{data.n_classes if reserved == 'n_classes' else data.in_channels}); remove it")
    return create_model(name, n_classes=data.n_classes, in_channels=data.in_channels, **args)


def _freezer(cfg: TrainConfig, model: nn.Module, dist: D.DistInfo):
    """The StageFreezer of ``init.freeze_stages`` for a network started from weights, or None."""
    from musetag.training.transfer import StageFreezer

    if not cfg.init.freeze_stages:
        return None
    if dist.enabled and cfg.init.freeze_epochs:
        raise ConfigError("init.freeze_epochs cannot unfreeze stages under DDP (torchrun): freeze for the whole "
                          "run (init.freeze_epochs = 0) or train on one process")
    return StageFreezer(model, cfg.init.freeze_stages, cfg.init.freeze_epochs or None)


def _init_transfer(cfg: TrainConfig, model: nn.Module, data: TrainingData, run_dir: Path, dist: D.DistInfo,
                   resume: bool, *, source: str, key_map: str, report_name: str, what: str = ""):
    """Load the matching weights of ``source`` into ``model`` (not on resume: last.pt holds them),
    write RUN_DIR/``report_name``; returns the StageFreezer of ``init.freeze_stages`` or None."""
    from musetag.training.transfer import load_source, transfer_weights

    freezer = _freezer(cfg, model, dist)
    if not resume:
        src = load_source(source)
        _check_front_end(src.features, data.feature_config, src.origin, data.normalize)
        report = transfer_weights(model, src, key_map=key_map or None, tags=list(data.tags))
        if freezer is not None:
            report.frozen_stages = freezer.stage_names
        if dist.is_main:
            report.save(run_dir / report_name)
            log.info("%s%s", what, report.summary())
    return freezer


#: FeatureConfig fields that change what a network hears (mean/std are the dataset's, compared apart)
_FRONT_END_FIELDS = ("kind", "sample_rate", "mono", "n_mels", "n_fft", "hop_length", "fmin", "fmax", "htk", "norm",
                     "power", "db_multiplier")


def _check_front_end(source_features: dict | None, features, origin: str, normalize: bool) -> None:
    """Weights trained on one front end are useless on another: refuse before training when the source
    (a package or checkpoint that records its features) heard different features than this run computes."""
    if not source_features:
        return
    theirs, ours = dict(source_features), features.to_dict()
    differ = [f"{k}: {theirs[k]!r} there, {ours[k]!r} here" for k in _FRONT_END_FIELDS
              if k in theirs and k in ours and theirs[k] != ours[k]]
    if differ:
        raise ConfigError(
            f"--init-from {origin} was trained on {theirs.get('name', 'other')} features, but this run computes "
            f"{ours.get('name')} ({'; '.join(differ[:4])}). Set [features] preset = {theirs.get('name')!r} in the "
            "recipe (or --set features.preset=...), so the network hears what it was trained on"
        )
    if theirs.get("mean") is None and normalize:
        log.warning("%s was trained on unnormalised features; this run normalises them (data.normalize = true): "
                    "set data.normalize = false to feed it what it was trained on", origin)


def check_models(cfg: TrainConfig) -> None:
    """Model names and arguments, checked before any data is prepared (a typo costs nothing)."""
    import inspect

    from musetag.models import model_info

    specs = [("model", cfg.model.name, cfg.model.args)]
    if cfg.coteaching.enabled:
        specs.append(("coteaching.peer", cfg.coteaching.peer, cfg.coteaching.peer_args))
    for key, name, args in specs:
        try:
            info = model_info(name)
        except MusetagError as exc:
            raise ConfigError(f"{key} = {name!r}: {exc}") from None
        params = inspect.signature(info.builder).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        accepted = [p for p in params if p not in ("n_classes", "in_channels")]
        unknown = sorted(set(args) - set(accepted))
        if unknown:
            raise ConfigError(f"{key.replace('peer', 'peer_args') if key != 'model' else 'model.args'}: "
                              f"{name!r} has no argument(s) {', '.join(unknown)}; it accepts: {', '.join(accepted)}")


def _segment_meta(cfg: TrainConfig, data: TrainingData) -> dict:
    crop = cfg.data.eval_crop or cfg.data.crop
    key = "samples" if data.kind == "waveform" else "frames"
    return {key: int(crop), "hop": int(cfg.data.eval_hop or crop), "aggregation": cfg.data.aggregation,
            "max_segments": int(cfg.data.eval_max_segments)}


def _meta(model: nn.Module, data: TrainingData, cfg: TrainConfig, thresholds=None) -> dict:
    plain = ckpt.unwrap(model)
    spec = getattr(plain, "musetag_config", None) or {"name": cfg.model.name, "args": dict(cfg.model.args)}
    return {"model": spec, "features": data.feature_config.to_dict(), "tags": list(data.tags),
            "task": data.task, "segment": _segment_meta(cfg, data), "thresholds": thresholds}


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def _predict(models: list[nn.Module], weights: list[float], data: TrainingData, split: str, cfg: TrainConfig,
             device: torch.device, dist: D.DistInfo, autocast) -> np.ndarray:
    """Track-level probabilities ``(tracks, n_classes)`` for ``split`` (rows in dataset order).
    Each rank scores its share of the tracks; the result is gathered on every rank."""
    n = len(data.splits[split])
    n_out = data.n_classes
    if n == 0:
        return np.zeros((0, n_out), np.float32)
    for m in models:
        m.eval()
    crop = cfg.data.eval_crop or cfg.data.crop
    hop = cfg.data.eval_hop or crop
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
            probs = _aggregate(logits, counts, cfg.data.aggregation, data.task)
            mixed = probs * w if mixed is None else mixed + probs * w
        mixed = mixed / sum(w for w in weights if w)
        for (index, _), row in zip(buffer, mixed.cpu().numpy()):
            results[index] = row
        buffer.clear()

    pending = 0
    for index in mine:
        segs = segments(data.load(split, index), crop, hop, cfg.data.eval_max_segments)
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


def _aggregate(logits: torch.Tensor, counts: list[int], how: str, task: str) -> torch.Tensor:
    act = (lambda z: torch.softmax(z, dim=-1)) if task == "multiclass" else torch.sigmoid
    rows = []
    for part in torch.split(logits, counts):
        if how == "max":
            rows.append(act(part).max(dim=0).values)
        else:
            rows.append(act(part).mean(dim=0))
    return torch.stack(rows)


def _scores(preds: np.ndarray, data: TrainingData, split: str) -> dict:
    targets = data.splits[split].targets
    if len(targets) == 0:
        return {}
    out = score(preds, targets, data.task)
    out["loss"] = loss_value(preds, targets, data.task)
    return out


# ---------------------------------------------------------------------------------------------
# one epoch of training


class _State:
    """Everything that changes during a run (and is saved in last.pt)."""

    def __init__(self) -> None:
        self.epoch = 0          # epochs completed
        self.step = 0           # batches completed inside the current epoch (mid-epoch checkpoints)
        self.partial = {"loss_sum": 0.0, "count": 0}
        self.history: list[dict] = []
        self.optimizer_name = ""
        self.global_step = 0


def _train_epoch(epoch: int, *, models, optimizers, schedules, loader, sampler, loss_fn, augment, cfg, data,
                 device, dist, autocast, scaler, state: _State, save_mid_epoch) -> float:
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


class _WithSegments(nn.Module):
    """Training view of a model with an auxiliary output: AMLAG's MobileNetV2 with self-attention
    has ``forward_with_segments(x) -> (logits, segment_logits)``; the loss is the sum of the loss
    on the attention output and on the per-segment MobileNetV2 predictions averaged over segments
    (as in the paper). Wrapping it as a module keeps DDP's gradient hooks on this forward."""

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
        return sum(loss_fn(z, y, reduction=reduction) for z in logits)
    return loss_fn(logits, y, reduction=reduction)


# ---------------------------------------------------------------------------------------------
# the run


def _run(cfg: TrainConfig, run_dir: Path, *, resume: bool, training_data: TrainingData | None = None) -> RunResult:
    device_type = "cuda" if (cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())) else "cpu"
    dist = D.setup(device_type)
    try:
        return _run_inner(cfg, run_dir, resume=resume, dist=dist, training_data=training_data)
    finally:
        D.teardown(dist)


@dataclass
class _Run:
    """One run's fixed parts (set up once) and the objects the epochs update; the pieces below
    (:func:`_setup` -> :func:`_epochs` -> :func:`_final_candidates` -> :func:`_write`) share it."""

    cfg: TrainConfig
    run_dir: Path
    dist: D.DistInfo
    device: torch.device
    autocast: Any
    data: TrainingData
    metric: str
    t0: float
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
    state: _State = field(default_factory=_State)
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
        return _predict(models, weights, self.data, split, self.cfg, self.device, self.dist, self.autocast)

    def save(self, model, name: str, kind: str, epoch: int, metrics=None, thresholds=None, meta_model=None) -> None:
        """``checkpoints/<name>``: ``model``'s weights, described by ``meta_model`` (default: itself)."""
        meta = _meta(meta_model if meta_model is not None else model, self.data, self.cfg, thresholds)
        ckpt.save_checkpoint(ckpt.model_payload(model, meta=meta, kind=kind, epoch=epoch, metrics=metrics),
                             self.ckpt_dir / name)


def _run_inner(cfg: TrainConfig, run_dir: Path, *, resume: bool, dist: D.DistInfo,
               training_data: TrainingData | None) -> RunResult:
    run = _setup(cfg, Path(run_dir), resume=resume, dist=dist, training_data=training_data)
    _epochs(run)
    final, candidates, swa_model = _final_candidates(run)
    return _write(run, final, candidates, swa_model)


# -- setup ---------------------------------------------------------------------------------------
def _setup(cfg: TrainConfig, run_dir: Path, *, resume: bool, dist: D.DistInfo,
           training_data: TrainingData | None) -> _Run:
    """Run folder, data, networks, optimisation, strategies, resume state, wrappers, loader."""
    t0 = time.time()
    check_models(cfg)
    device = _device(cfg, dist)
    autocast = _autocast(cfg, device)
    _prepare_run_dir(cfg, run_dir, resume, dist)
    data = _load_data(cfg, run_dir, dist, training_data)
    run = _Run(cfg, run_dir, dist, device, autocast, data, reported_metric(data.task), t0)
    _build_networks(run, resume)
    _build_optimisation(run)
    if resume:
        _resume(run)
    _wrap_networks(run)
    _build_loader(run)
    if dist.is_main:
        n_params = sum(p.numel() for p in run.models[0].parameters())
        log.info("training %s (%.2fM parameters) on %d train / %d validation / %d test tracks, %s, device %s%s",
                 cfg.model.name, n_params / 1e6, len(data.splits["train"]), len(data.splits["validation"]),
                 len(data.splits["test"]), data.feature_config.describe(), device,
                 f", {dist.world_size} processes" if dist.enabled else "")
    return run


def _prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool, dist: D.DistInfo) -> None:
    last_path = run_dir / "checkpoints" / "last.pt"
    if resume and not last_path.exists():
        raise ConfigError(f"{run_dir} has no checkpoints/last.pt to resume from; start a new run instead")
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        last_path.parent.mkdir(parents=True, exist_ok=True)
        if not resume:
            dump_toml(cfg, run_dir / "config.toml",
                      header=f"resolved musetag training config (recipe: {cfg.recipe or 'custom'})")


def _load_data(cfg: TrainConfig, run_dir: Path, dist: D.DistInfo, training_data: TrainingData | None) -> TrainingData:
    """The training data; rank 0 fills the cache first."""
    if training_data is not None:
        return training_data
    if dist.is_main:
        data = load_training_data(cfg, run_dir, progress=cfg.progress)
    D.barrier(dist)
    if not dist.is_main:
        data = load_training_data(cfg, run_dir, progress=False)
    return data


def _build_networks(run: _Run, resume: bool) -> None:
    """The model (started from weights with ``init.path``) and the co-teaching peer, if any."""
    cfg, data, device = run.cfg, run.data, run.device
    _seed_everything(cfg.seed)
    model = _build_model(cfg.model.name, cfg.model.args, data).to(device)
    freezers = []  # one per network started from weights (the model, the co-teaching peer)
    if cfg.init.path:
        freezers.append(_init_transfer(cfg, model, data, run.run_dir, run.dist, resume, source=cfg.init.path,
                                       key_map=cfg.init.map, report_name="transfer.json"))
    run.models, run.weights = [model], [1.0]
    if cfg.coteaching.enabled:
        torch.manual_seed(cfg.seed + 1)
        peer = _build_model(cfg.coteaching.peer, cfg.coteaching.peer_args, data).to(device)
        if cfg.coteaching.peer_init:
            freezers.append(_init_transfer(cfg, peer, data, run.run_dir, run.dist, resume,
                                           source=cfg.coteaching.peer_init, key_map=cfg.coteaching.peer_init_map,
                                           report_name="transfer-peer.json", what="peer: "))
        run.models.append(peer)
        run.weights = [float(w) for w in cfg.coteaching.weights]
    run.freezers = [f for f in freezers if f is not None]


def _build_optimisation(run: _Run) -> None:
    """Loss, optimisers, schedules, and the strategies: SWA, snapshots, (per-class) early stopping, AMP, augmentation."""
    cfg, data, models = run.cfg, run.data, run.models
    run.loss_fn = build_loss(cfg.loss.name, task=data.task, train_targets=data.splits["train"].targets,
                             focal_alpha=cfg.loss.focal_alpha, focal_gamma=cfg.loss.focal_gamma,
                             label_smoothing=cfg.loss.label_smoothing).to(run.device)
    swa_start = swa_start_epoch(cfg.epochs, cfg.swa.length) if cfg.swa.enabled else None
    run.state.optimizer_name = cfg.optim.name
    run.optimizers = [build_optimizer(param_groups(m, cfg.init.body_lr_scale), cfg.optim) for m in models]
    run.schedules = [LRSchedule(cfg.schedule, epochs=cfg.epochs, base_lr=cfg.optim.lr, swa_start=swa_start,
                                swa_lr=cfg.swa.lr, swa_anneal_epochs=cfg.swa.anneal_epochs) for _ in models]
    run.swa = SWA(models[0], epochs=cfg.epochs, length=cfg.swa.length) if cfg.swa.enabled else None
    run.snapshots = Snapshots(cfg.snapshots.count, cfg.epochs)
    run.stopper = EarlyStopping(cfg.early_stopping.patience, mode="max")
    run.per_class = PerClassEarlyStopping(data.n_classes) if cfg.early_stopping.per_class else None
    run.scaler = torch.amp.GradScaler("cuda") if (cfg.amp in ("fp16", "auto") and run.device.type == "cuda") else None
    if cfg.augment.noise_std > 0 and data.kind != "waveform":
        raise ConfigError(f"augment.noise_std adds noise to waveforms, but the features here are {data.kind} "
                          f"({data.feature_config.name}); set augment.noise_std = 0 or use a waveform preset")
    run.augment = BatchAugment(cfg.augment, kind=data.kind, n_classes=data.n_classes, task=data.task,
                               feature_config=data.feature_config if data.normalize else
                               dataclasses.replace(data.feature_config, mean=None, std=None))


def _resume(run: _Run) -> None:
    """Networks, optimisers, schedules, strategies, counters and RNG from ``checkpoints/last.pt``."""
    cfg, state = run.cfg, run.state
    tr = ckpt.load_checkpoint(run.last_path, map_location="cpu")["training"]
    if tr["optimizer_name"] != cfg.optim.name:
        run.optimizers = [build_optimizer(param_groups(m, cfg.init.body_lr_scale), cfg.optim, name=tr["optimizer_name"])
                          for m in run.models]
    for m, sd in zip(run.models, tr["models"]):
        m.load_state_dict(sd)
    for opt, sd in zip(run.optimizers, tr["optimizers"]):
        opt.load_state_dict(sd)
    for sch, sd in zip(run.schedules, tr["schedules"]):
        sch.load_state_dict(sd)
    if run.swa is not None and tr.get("swa") is not None:
        run.swa.load_state_dict(tr["swa"])
    run.stopper.load_state_dict(tr["early_stopping"])
    if run.per_class is not None and tr.get("per_class") is not None:
        run.per_class.load_state_dict(tr["per_class"])
    state.epoch, state.step = int(tr["epoch"]), int(tr["step"])
    state.partial = dict(tr["partial"])
    state.history = list(tr["history"])
    state.optimizer_name = tr["optimizer_name"]
    state.global_step = int(tr.get("global_step", 0))
    ckpt.set_rng_state(tr["rng"])
    if run.dist.is_main:
        _rewrite_metrics(run.run_dir, state.history)
        log.info("resuming %s at epoch %d, step %d", run.run_dir, state.epoch + 1, state.step)


def _wrap_networks(run: _Run) -> None:
    """Freezing, SyncBatchNorm, segment-level forward, DDP and compile, in that order."""
    cfg, dist, device = run.cfg, run.dist, run.device
    for freezer in run.freezers:
        freezer.apply(run.state.epoch)  # before DDP wraps the model: it registers the trainable parameters
    if dist.enabled and cfg.sync_batchnorm and device.type == "cuda":
        # batch statistics over the global batch, as one process would compute them (CUDA only:
        # on CPU each process normalises its own part of the batch)
        run.models = [nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in run.models]  # same Parameter objects
    run.train_models = []
    for m in run.models:
        wrapped = _WithSegments(m) if hasattr(m, "forward_with_segments") else m
        if dist.enabled:
            wrapped = nn.parallel.DistributedDataParallel(
                wrapped, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            wrapped = torch.compile(wrapped)
        run.train_models.append(wrapped)


def _build_loader(run: _Run) -> None:
    cfg, dist, data = run.cfg, run.dist, run.data
    run.per_rank_batch = cfg.data.batch_size // dist.world_size if dist.enabled else cfg.data.batch_size
    if dist.enabled and cfg.data.batch_size % dist.world_size:
        raise ConfigError(f"data.batch_size = {cfg.data.batch_size} is the global batch; it must be divisible "
                          f"by the {dist.world_size} processes")
    run.sampler = EpochSampler(len(data.splits["train"]), seed=cfg.seed, rank=dist.rank, world_size=dist.world_size)
    train_set = CropDataset(data, "train", cfg.data.crop)
    # own generator: creating an iterator never draws from the global RNG (exact resume)
    run.loader = DataLoader(train_set, batch_size=run.per_rank_batch, sampler=run.sampler,
                            num_workers=cfg.data.num_workers, collate_fn=collate, drop_last=cfg.data.drop_last,
                            generator=torch.Generator().manual_seed(cfg.seed), persistent_workers=False,
                            pin_memory=run.device.type == "cuda")


def _training_payload(run: _Run) -> dict:
    state = run.state
    return {
        "epoch": state.epoch, "step": state.step, "partial": dict(state.partial),
        "models": [ckpt.unwrap(m).state_dict() for m in run.models],
        "optimizers": [o.state_dict() for o in run.optimizers],
        "optimizer_name": state.optimizer_name,
        "schedules": [s.state_dict() for s in run.schedules],
        "swa": run.swa.state_dict() if run.swa is not None else None,
        "early_stopping": run.stopper.state_dict(),
        "per_class": run.per_class.state_dict() if run.per_class is not None else None,
        "history": list(state.history), "rng": ckpt.rng_state(), "global_step": state.global_step,
        "sampler": {"seed": run.cfg.seed, "epoch": state.epoch, "position": state.step * run.per_rank_batch},
    }


def _save_last(run: _Run) -> None:
    """``checkpoints/last.pt``: the model plus everything resume needs (rank 0 writes, all wait)."""
    if run.dist.is_main:
        model = run.models[0]
        payload = ckpt.model_payload(model, meta=_meta(model, run.data, run.cfg), kind="last", epoch=run.state.epoch)
        payload["training"] = _training_payload(run)
        ckpt.save_checkpoint(payload, run.last_path)
    D.barrier(run.dist)


# -- epochs --------------------------------------------------------------------------------------
def _epochs(run: _Run) -> None:
    """Train until ``cfg.epochs`` or early stopping; ``last.pt`` after every epoch."""
    cfg, state = run.cfg, run.state
    while state.epoch < cfg.epochs:
        record = _epoch(run, state.epoch)
        state.history.append(record)
        if run.dist.is_main:
            with open(run.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(_jsonable(record)) + "\n")
        state.epoch += 1
        state.step = 0
        state.partial = {"loss_sum": 0.0, "count": 0}
        _save_last(run)
        if run.stopper.should_stop:
            run.stopped_early = True
            if run.dist.is_main:
                log.info("early stopping: no better validation %s for %d epochs", run.metric, run.stopper.patience)
            break


def _epoch(run: _Run, epoch: int) -> dict:
    """One epoch: train, validate, then each strategy's bookkeeping; the metrics.jsonl record."""
    cfg, state, dist, metric = run.cfg, run.state, run.dist, run.metric
    _maybe_switch_to_sgd(run, epoch)
    for freezer in run.freezers:
        freezer.apply(epoch)
    if state.step == 0:
        torch.manual_seed(_epoch_seed(cfg.seed, epoch, dist.rank))
        state.partial = {"loss_sum": 0.0, "count": 0}
    run.sampler.set_epoch(epoch, start=state.step * run.per_rank_batch)
    train_loss = _train_epoch(epoch, models=run.train_models, optimizers=run.optimizers, schedules=run.schedules,
                              loader=run.loader, sampler=run.sampler, loss_fn=run.loss_fn, augment=run.augment,
                              cfg=cfg, data=run.data, device=run.device, dist=dist, autocast=run.autocast,
                              scaler=run.scaler, state=state, save_mid_epoch=lambda: _save_last(run))
    lr = run.optimizers[0].param_groups[0]["lr"]
    val_pred = run.predict(run.models, run.weights, "validation")
    val = _scores(val_pred, run.data, "validation")
    record = {"epoch": epoch, "train_loss": train_loss, "lr": lr, "optimizer": state.optimizer_name}
    record.update({f"val_{k}": v for k, v in val.items()})
    if len(run.models) > 1:
        for i, m in enumerate(run.models):
            single = _scores(run.predict([m], [1.0], "validation"), run.data, "validation")
            record[f"val_{metric}_model{i}"] = single.get(metric)
    value = val.get(metric, float("nan"))
    is_best = _track_best(run, epoch, value, val)
    record["best"] = is_best
    if run.swa is not None and run.swa.update(run.models[0], epoch):
        record["swa_models"] = run.swa.n_averaged
    if run.snapshots.is_snapshot(epoch) and dist.is_main:
        k = run.snapshots.index(epoch)
        run.save(run.models[0], f"snapshot-{k}.pt", "snapshot", epoch, metrics=val)
        record["snapshot"] = k
    if run.per_class is not None:
        record["per_class_improved"] = _per_class_step(run, epoch, val_pred)
    for s in run.schedules:
        s.end_epoch(val.get("loss"))
    record["time"] = round(time.time() - run.t0, 2)
    if dist.is_main:
        log.info("epoch %d/%d  train loss %.4f  val loss %.4f  val %s %.4f%s  lr %.3g", epoch + 1, cfg.epochs,
                 train_loss, val.get("loss", float("nan")), metric, value, "  (best)" if is_best else "", lr)
    return record


def _maybe_switch_to_sgd(run: _Run, epoch: int) -> None:
    """``optim.switch_to_sgd_epoch``: from that epoch on, Nesterov SGD (Koutini 2019)."""
    cfg, state = run.cfg, run.state
    if not (cfg.optim.switch_to_sgd_epoch and epoch >= cfg.optim.switch_to_sgd_epoch and state.optimizer_name != "sgd"):
        return
    switch_lr = cfg.optim.switch_lr or cfg.optim.lr
    run.optimizers = [build_optimizer(param_groups(m, cfg.init.body_lr_scale), cfg.optim, name="sgd", lr=switch_lr)
                      for m in run.models]
    for s in run.schedules:
        s.base_lr = switch_lr
    state.optimizer_name = "sgd"
    if run.dist.is_main:
        log.info("epoch %d: switching the optimiser from %s to SGD (Nesterov), lr %g", epoch + 1,
                 cfg.optim.name, switch_lr)


def _track_best(run: _Run, epoch: int, value: float, val: dict) -> bool:
    """Early stopping on the reported metric; ``best.pt`` (and ``peer_best.pt``) when it improves."""
    is_best = run.stopper.update(value, epoch)
    if is_best and run.dist.is_main:
        for i, m in enumerate(run.models):
            name = "best.pt" if i == 0 else "peer_best.pt"
            run.save(m, name, name[:-3], epoch, metrics=val)
    return is_best


def _per_class_step(run: _Run, epoch: int, val_pred: np.ndarray) -> int:
    """Per-class early stopping: keep each class's predictions from its best epoch; the number improved."""
    data, per_class = run.data, run.per_class
    improved = per_class.update(per_class_loss(val_pred, data.splits["validation"].targets, data.task), epoch)
    if improved.any():
        per_class.store("validation", val_pred, improved)
        if len(data.splits["test"]):
            per_class.store("test", run.predict(run.models, run.weights, "test"), improved)
        if run.dist.is_main:
            run.save(run.models[0], f"epochs/epoch-{epoch:04d}.pt", "epoch", epoch)
            _prune_epochs(run.ckpt_dir / "epochs", per_class.epochs_in_use())
    return int(improved.sum())


# -- final candidates ----------------------------------------------------------------------------
def _final_candidates(run: _Run) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]], nn.Module | None]:
    """Validation and test predictions of every final-model candidate (last, best, swa, snapshots,
    per_class), and which one is final."""
    cfg, state, swa = run.cfg, run.state, run.swa
    final = resolved_final(cfg)
    if final == "swa" and swa is not None and swa.n_averaged == 0:
        log.warning("SWA never started (stopped at epoch %d before epoch %d); using the best epoch instead",
                    state.epoch, swa.start_epoch + 1)
        final = "best"
    if final == "snapshots" and run.stopped_early:
        log.warning("training stopped early, snapshots are incomplete; averaging those taken")
    candidates: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def both(ms, ws):
        return run.predict(ms, ws, "validation"), run.predict(ms, ws, "test")

    candidates["last"] = both(run.models, run.weights)
    if run.stopper.best_epoch == state.epoch - 1 or run.stopper.best_epoch < 0:
        candidates["best"] = candidates["last"]  # the last epoch is the best one: same weights
    else:
        best_models = _load_best(run.models, run.ckpt_dir, run.dist, run.device)
        candidates["best"] = both(best_models, run.weights) if best_models else candidates["last"]
    swa_model = None
    if swa is not None and swa.n_averaged > 0:
        swa_model = swa.finalize(_bn_inputs(run.data, cfg, run.device), device=run.device)
        candidates["swa"] = both([swa_model], [1.0])
    if run.snapshots.count:
        snap_models = _load_snapshots(run.models[0], run.ckpt_dir, run.snapshots, run.dist, run.device)
        if snap_models:
            preds = [both([m], [1.0]) for m in snap_models]
            candidates["snapshots"] = (Snapshots.average([p[0] for p in preds]), Snapshots.average([p[1] for p in preds]))
    per_class = run.per_class
    if per_class is not None and "validation" in per_class.predictions:
        test_pc = per_class.predictions.get("test", np.zeros((0, run.data.n_classes), np.float32))
        candidates["per_class"] = (per_class.composite("validation"), test_pc)
    if final not in candidates:
        final = "best"
    return final, candidates, swa_model


# -- write ---------------------------------------------------------------------------------------
def _write(run: _Run, final: str, candidates: dict, swa_model: nn.Module | None) -> RunResult:
    """Predictions, thresholds in the checkpoints, summary.json and plots (rank 0); the RunResult."""
    data, state, metric = run.data, run.state, run.metric
    val_final, test_final = candidates[final]
    summary_candidates = {name: {"validation": _scores(v, data, "validation"), "test": _scores(t, data, "test")}
                          for name, (v, t) in candidates.items()}
    val_scores = summary_candidates[final]["validation"]
    test_scores = summary_candidates[final]["test"]
    thresholds = (max_f1_thresholds(val_final, data.splits["validation"].targets)
                  if data.task == "multilabel" else None)
    if run.dist.is_main:
        _write_predictions(run, final, candidates)
        package_ckpt = _write_thresholds(run, final, candidates, swa_model, thresholds, summary_candidates)
        summary = {
            "recipe": run.cfg.recipe, "task": data.task, "metric": metric, "final": final,
            "checkpoint": f"checkpoints/{package_ckpt}",
            "best_epoch": run.stopper.best_epoch, "epochs_run": state.epoch, "stopped_early": run.stopped_early,
            "validation": val_scores, "test": test_scores, "candidates": summary_candidates,
            "tags": list(data.tags), "n_tracks": {k: len(v) for k, v in data.splits.items()},
            "seconds": round(time.time() - run.t0, 1), "world_size": run.dist.world_size,
        }
        if run.per_class is not None:
            summary["per_class_best_epoch"] = [int(e) for e in run.per_class.best_epoch]
        (run.run_dir / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2), encoding="utf-8")
        try:
            from musetag.training.plots import plot_training_curves

            plot_training_curves(state.history, run.run_dir / "plots", metric=metric)
        except Exception as exc:  # noqa: BLE001 - plots never lose a finished run
            log.warning("could not draw the training plots: %s", exc)
        log.info("done: final = %s, validation %s %.4f, test %s %s", final, metric, val_scores.get(metric, float("nan")),
                 metric, f"{test_scores[metric]:.4f}" if metric in test_scores else "n/a")
    D.barrier(run.dist)
    return RunResult(run.run_dir, final, metric, run.stopper.best_epoch, val_scores, test_scores, state.epoch,
                     state.history)


def _write_predictions(run: _Run, final: str, candidates: dict) -> None:
    data = run.data
    pred_dir = run.run_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    val_final, test_final = candidates[final]
    for split, arr in (("validation", val_final), ("test", test_final)):
        np.save(pred_dir / f"{split}.npy", arr.astype(np.float32))
        np.save(pred_dir / f"{split}_targets.npy", data.splits[split].targets)
        (pred_dir / f"{split}_ids.txt").write_text("\n".join(data.splits[split].ids) + "\n", encoding="utf-8")
    for name, (v, t) in candidates.items():
        if name != final:
            np.save(pred_dir / f"{name}-validation.npy", v.astype(np.float32))
            np.save(pred_dir / f"{name}-test.npy", t.astype(np.float32))


def _write_thresholds(run: _Run, final: str, candidates: dict, swa_model, thresholds, summary_candidates) -> str:
    """Checkpoints carry the thresholds tuned on their predictions; the checkpoint to package."""
    data, ckpt_dir = run.data, run.ckpt_dir
    final_source = {"swa": swa_model, "last": run.models[0]}.get(final)
    if swa_model is not None:
        run.save(swa_model, "swa.pt", "swa", run.state.epoch - 1, metrics=summary_candidates["swa"]["validation"],
                 thresholds=thresholds, meta_model=run.models[0])
    best_path = ckpt_dir / "best.pt"
    if best_path.exists():
        payload = ckpt.load_checkpoint(best_path)
        payload["thresholds"] = (max_f1_thresholds(candidates["best"][0], data.splits["validation"].targets)
                                 if data.task == "multilabel" else None)
        ckpt.save_checkpoint(payload, best_path)
    if final_source is not None and final == "last":
        payload = ckpt.load_checkpoint(run.last_path)
        payload["thresholds"] = thresholds
        ckpt.save_checkpoint(payload, run.last_path)
    return {"swa": "swa.pt", "last": "last.pt"}.get(final, "best.pt")


def _load_best(models, ckpt_dir: Path, dist, device) -> list[nn.Module] | None:
    import copy

    D.barrier(dist)
    out = []
    for i, m in enumerate(models):
        path = ckpt_dir / ("best.pt" if i == 0 else "peer_best.pt")
        if not path.exists():
            return None
        clone = copy.deepcopy(ckpt.unwrap(m))
        clone.load_state_dict(ckpt.load_checkpoint(path)["state_dict"])
        out.append(clone.to(device))
    return out


def _load_snapshots(model, ckpt_dir: Path, snapshots: Snapshots, dist, device) -> list[nn.Module]:
    import copy

    D.barrier(dist)
    out = []
    for k in range(snapshots.count):
        path = ckpt_dir / f"snapshot-{k}.pt"
        if path.exists():
            clone = copy.deepcopy(ckpt.unwrap(model))
            clone.load_state_dict(ckpt.load_checkpoint(path)["state_dict"])
            out.append(clone.to(device))
    return out


def _bn_inputs(data: TrainingData, cfg: TrainConfig, device):
    """Training crops (no augmentation, fixed order) for recomputing SWA batch-norm statistics."""
    sampler = EpochSampler(len(data.splits["train"]), seed=cfg.seed + 1, shuffle=False)
    loader = DataLoader(CropDataset(data, "train", cfg.data.crop), batch_size=cfg.data.batch_size, sampler=sampler,
                        collate_fn=collate, num_workers=0, generator=torch.Generator().manual_seed(cfg.seed))
    for batch in loader:
        yield batch["x"].to(device)


def _prune_epochs(folder: Path, keep: list[int]) -> None:
    keep_names = {f"epoch-{e:04d}.pt" for e in keep}
    for path in folder.glob("epoch-*.pt"):
        if path.name not in keep_names:
            path.unlink(missing_ok=True)


def _rewrite_metrics(run_dir: Path, history: list[dict]) -> None:
    """After a resume, metrics.jsonl holds exactly the epochs the checkpoint knows about."""
    with open(run_dir / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for record in history:
            fh.write(json.dumps(_jsonable(record)) + "\n")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


# ---------------------------------------------------------------------------------------------
# multi-model ensembles ([[members]])


def _run_members(cfg: TrainConfig, run_dir: Path, *, training_data=None) -> RunResult:
    """Train every member (``RUN_DIR/members/<name>``) and average their predictions (weighted)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.toml").exists():
        dump_toml(cfg, run_dir / "config.toml", header=f"resolved musetag ensemble config (recipe: {cfg.recipe or 'custom'})")
    base = cfg.to_dict()
    base["members"] = []
    base["member_sets"] = []
    shared = {"data": {"dataset": cfg.data.dataset, "cache_dir": cfg.data.cache_dir}, "device": cfg.device,
              "amp": cfg.amp, "compile": cfg.compile, "progress": cfg.progress}
    results = []
    for member in cfg.members:
        member_dir = run_dir / "members" / member.name
        from musetag.training.config import merge, read_recipe

        start = read_recipe(member.recipe) if member.recipe else base
        member_data = merge(merge(start, shared), _nested_sets(member.set))
        member_data["out"] = str(member_dir)
        member_cfg = load_config(member_data, sets=list(cfg.member_sets))
        if (member_dir / "summary.json").exists():
            log.info("member %s already trained", member.name)
        elif (member_dir / "checkpoints" / "last.pt").exists():
            _run(member_cfg, member_dir, resume=True, training_data=training_data)
        else:
            _run(member_cfg, member_dir, resume=False, training_data=training_data)
        results.append(json.loads((member_dir / "summary.json").read_text()))
    weights = np.array([m.weight for m in cfg.members], dtype=np.float64)
    weights = weights / weights.sum()
    out = {}
    for split in ("validation", "test"):
        preds = [np.load(run_dir / "members" / m.name / "predictions" / f"{split}.npy") for m in cfg.members]
        out[split] = np.tensordot(weights, np.stack(preds), axes=1).astype(np.float32)
        targets = np.load(run_dir / "members" / cfg.members[0].name / "predictions" / f"{split}_targets.npy")
        (run_dir / "predictions").mkdir(exist_ok=True)
        np.save(run_dir / "predictions" / f"{split}.npy", out[split])
        np.save(run_dir / "predictions" / f"{split}_targets.npy", targets)
        ids = run_dir / "members" / cfg.members[0].name / "predictions" / f"{split}_ids.txt"
        (run_dir / "predictions" / f"{split}_ids.txt").write_text(ids.read_text(encoding="utf-8"), encoding="utf-8")
    task = results[0]["task"]
    metric = results[0]["metric"]
    scores = {}
    for split in ("validation", "test"):
        targets = np.load(run_dir / "predictions" / f"{split}_targets.npy")
        scores[split] = score(out[split], targets, task) if len(targets) else {}
        if len(targets):
            scores[split]["loss"] = loss_value(out[split], targets, task)
    summary = {"recipe": cfg.recipe, "task": task, "metric": metric, "final": "ensemble",
               "members": {m.name: {"weight": float(w), "validation": r["validation"], "test": r["test"]}
                           for m, w, r in zip(cfg.members, weights, results)},
               "validation": scores["validation"], "test": scores["test"]}
    (run_dir / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2), encoding="utf-8")
    log.info("ensemble of %d: validation %s %.4f", len(cfg.members), metric, scores["validation"].get(metric, float("nan")))
    return RunResult(run_dir, "ensemble", metric, -1, scores["validation"], scores["test"],
                     sum(r.get("epochs_run", 0) for r in results))


def _nested_sets(sets: dict) -> dict:
    """``{"model.name": "x", "optim": {"lr": 1}}`` -> nested dict (dotted keys allowed)."""
    from musetag.training.config import _nest, merge

    out: dict = {}
    for key, value in sets.items():
        out = merge(out, _nest(key, value) if "." in key else {key: value})
    return out
