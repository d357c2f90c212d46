"""Setting a run up: device, precision, networks (and their starting weights), optimisation,
strategies, resume state, DDP wrappers and the training loader (:func:`setup_run`).

Every check that needs no data (model names and arguments: :func:`check_models`) runs before the
dataset is read; the resolved schedule (run length, SWA phase, snapshot epochs) is logged first.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from musetag.errors import ConfigError, MusetagError
from musetag.features.augment import BatchAugment, InModelSpecAugment
from musetag.models.weights import load_checkpoint
from musetag.training import checkpoint as ckpt
from musetag.training import distributed as D
from musetag.training.config import TrainConfig
from musetag.training.recipes import dump_toml, load_toml_config
from musetag.training.data import (CropDataset, EpochSampler, TrainingData, collate, load_training_data,
                                   warn_unlearnable)
from musetag.training.early_stopping import EarlyStopping, PerClassEarlyStopping
from musetag.training.epoch import WithSegments
from musetag.training.losses import build_loss
from musetag.training.run_length import describe_schedule
from musetag.training.resume_checks import check_resumable, check_weights_fit, finalised
from musetag.training.runstate import Run, jsonable
from musetag.training.param_groups import param_groups
from musetag.training.schedules import LRSchedule, build_optimizer
from musetag.training.scoring import reported_metric
from musetag.training.swa import SWA, Snapshots, swa_start_epoch
from musetag.training.timing import PhaseTimer

log = logging.getLogger("musetag.train")


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


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.default_rng([seed, epoch, rank, 104729]).integers(0, 2**62))


def _build_model(name: str, args: dict, data: TrainingData) -> nn.Module:
    from musetag.models import create_model

    args = dict(args)
    for reserved in ("n_classes", "in_channels"):
        if reserved in args:
            raise ConfigError(f"model.args.{reserved} is set from the dataset ({reserved} = "
                              f"{data.n_classes if reserved == 'n_classes' else data.in_channels}); remove it")
    return create_model(name, n_classes=data.n_classes, in_channels=data.in_channels, **args)


def _check_crops(cfg: TrainConfig, model: nn.Module, name: str, what: str) -> None:
    """Refuse, in one line naming the settings, crops shorter than the network accepts (before training:
    the model's own check fired only at the first batch, as "use longer segments")."""
    spec = getattr(model, "default_input", None)
    need = int(getattr(spec, "min_length", 0) or 0)
    unit = "samples" if getattr(spec, "kind", "") == "waveform" else "frames"
    short = [(key, value) for key, value in (("data.crop", cfg.data.crop), ("data.eval_crop", cfg.data.eval_crop))
             if 0 < int(value) < need]
    if short:
        sets = " ".join(f"--set {key}={need}" for key, _ in short)
        got = ", ".join(f"{key} = {value}" for key, value in short)
        raise ConfigError(f"{what}{name!r} needs inputs of at least {need} {unit}, but {got}; "
                          f"set {sets} or more")


def _freezer(cfg: TrainConfig, model: nn.Module, dist: D.DistInfo):
    """The StageFreezer of ``init.freeze_stages`` for a network started from weights, or None."""
    from musetag.training.transfer import StageFreezer

    if not cfg.init.freeze_stages:
        return None
    if dist.enabled and cfg.init.freeze_epochs:
        raise ConfigError("init.freeze_epochs cannot unfreeze stages under DDP (torchrun): freeze for the whole "
                          "run (init.freeze_epochs = 0) or train on one process")
    return StageFreezer(model, cfg.init.freeze_stages, cfg.init.freeze_epochs or None, keep_frozen=cfg.init.keep_frozen)


def _init_transfer(cfg: TrainConfig, model: nn.Module, data: TrainingData, run_dir: Path, dist: D.DistInfo,
                   resume: bool, *, source: str, key_map: str, report_name: str, what: str = "",
                   option: str = "--init-from"):
    """Load the matching weights of ``source`` into ``model`` (not on resume: last.pt holds them),
    write RUN_DIR/``report_name``; returns the StageFreezer of ``init.freeze_stages`` or None."""
    from musetag.training.transfer import load_source, transfer_weights

    freezer = _freezer(cfg, model, dist)
    if not resume:
        src = load_source(source, option=option)
        _check_front_end(src.features, data.feature_config, src.origin, data.normalize, option)
        # a regression output is a value, not a tag's logit: no classifier row is copied for it, whatever its name
        tags = None if data.task == "regression" else list(data.tags)
        report = transfer_weights(model, src, key_map=key_map or None, tags=tags, option=option)
        if freezer is not None:
            report.frozen_stages = freezer.stage_names
        if dist.is_main:
            report.save(run_dir / report_name)
            log.info("%s%s", what, report.summary())
    return freezer


#: FeatureConfig fields that change what a network hears (mean/std are the dataset's, compared apart)
_FRONT_END_FIELDS = ("kind", "sample_rate", "mono", "n_mels", "n_fft", "hop_length", "fmin", "fmax", "htk", "norm",
                     "power", "db_multiplier")


def _check_front_end(source_features: dict | None, features, origin: str, normalize: bool,
                     option: str = "--init-from") -> None:
    """Weights trained on one front end are useless on another: refuse before training when the source
    (a package or checkpoint that records its features) heard different features than this run computes."""
    if not source_features:
        return
    theirs, ours = dict(source_features), features.to_dict()
    differ = [f"{k}: {theirs[k]!r} there, {ours[k]!r} here" for k in _FRONT_END_FIELDS
              if k in theirs and k in ours and theirs[k] != ours[k]]
    if differ:
        raise ConfigError(
            f"{option} {origin} was trained on {theirs.get('name', 'other')} features, but this run computes "
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


def setup_run(cfg: TrainConfig, run_dir: Path, *, resume: bool, dist: D.DistInfo,
              training_data: TrainingData | None) -> Run:
    """Run folder, data, networks, optimisation, strategies, resume state, wrappers, loader."""
    t0 = time.time()
    timer = PhaseTimer()
    check_models(cfg)
    device = _device(cfg, dist)
    autocast = _autocast(cfg, device)
    _prepare_run_dir(cfg, run_dir, resume, dist)
    with timer.phase("data"):
        data = _load_data(cfg, run_dir, dist, training_data)
    run = Run(cfg, run_dir, dist, device, autocast, data, reported_metric(data.task), t0, timer=timer)
    with timer.phase("setup"):
        _build_networks(run, resume)
        _build_optimisation(run)
        if resume:
            _resume(run)
            _record_resumed_config(cfg, run_dir, dist)
        _wrap_networks(run)
        _build_loader(run)
    if dist.is_main:
        n_params = sum(p.numel() for p in run.models[0].parameters())
        what = f"{cfg.model.name} ({n_params / 1e6:.2f}M parameters)"
        if len(run.models) > 1:  # co-teaching: the peer trains too, and should be named
            peer = sum(p.numel() for p in run.models[1].parameters())
            what += f" and its co-teaching peer {cfg.coteaching.peer or cfg.model.name} ({peer / 1e6:.2f}M)"
        log.info("training %s on %d train / %d validation / %d test tracks, %s, device %s%s",
                 what, len(data.splits["train"]), len(data.splits["validation"]),
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
        # on resume, config.toml is rewritten only once checkpoints/last.pt has loaded (_record_resumed_config): a
        # resume refused for its --set values must leave the folder's config as it was


def _record_resumed_config(cfg: TrainConfig, run_dir: Path, dist: D.DistInfo) -> None:
    """--resume RUN --set epochs=N: the folder's config says what the run now is, so a later --resume (and
    package, report) reads the new length, not the old one."""
    if dist.is_main and load_toml_config(run_dir / "config.toml").to_dict() != cfg.to_dict():
        dump_toml(cfg, run_dir / "config.toml",
                  header=f"resolved musetag training config (recipe: {cfg.recipe or 'custom'}; changed with --set "
                         "when resumed)")


def _load_data(cfg: TrainConfig, run_dir: Path, dist: D.DistInfo, training_data: TrainingData | None) -> TrainingData:
    """The training data; rank 0 fills the cache first."""
    if training_data is not None:
        return training_data
    if dist.is_main:
        data = load_training_data(cfg, run_dir, progress=cfg.progress)
        warn_unlearnable(data)
    D.barrier(dist)
    if not dist.is_main:
        data = load_training_data(cfg, run_dir, progress=False)
    return data


def _build_networks(run: Run, resume: bool) -> None:
    """The model (started from weights with ``init.path``) and the co-teaching peer, if any."""
    cfg, data, device = run.cfg, run.data, run.device
    _seed_everything(cfg.seed)
    model = _build_model(cfg.model.name, cfg.model.args, data).to(device)
    _check_crops(cfg, model, cfg.model.name, "")
    freezers = []  # one per network started from weights (the model, the co-teaching peer)
    if cfg.init.path:
        freezers.append(_init_transfer(cfg, model, data, run.run_dir, run.dist, resume, source=cfg.init.path,
                                       key_map=cfg.init.map, report_name="transfer.json"))
    run.models, run.weights = [model], [1.0]
    if cfg.coteaching.enabled:
        torch.manual_seed(cfg.seed + 1)
        peer = _build_model(cfg.coteaching.peer, cfg.coteaching.peer_args, data).to(device)
        _check_crops(cfg, peer, cfg.coteaching.peer, "the co-teaching peer ")
        if cfg.coteaching.peer_init:
            freezers.append(_init_transfer(cfg, peer, data, run.run_dir, run.dist, resume,
                                           source=cfg.coteaching.peer_init, key_map=cfg.coteaching.peer_init_map,
                                           report_name="transfer-peer.json", what="peer: ",
                                           option="--init-peer-from"))
        run.models.append(peer)
        run.weights = [float(w) for w in cfg.coteaching.weights]
    run.freezers = [f for f in freezers if f is not None]


def _build_optimisation(run: Run) -> None:
    """Loss, optimisers, schedules, and the strategies: SWA, snapshots, (per-class) early stopping, AMP, augmentation."""
    cfg, data, models = run.cfg, run.data, run.models
    run.loss_fn = build_loss(cfg.loss.name, task=data.task, train_targets=data.splits["train"].targets,
                             focal_alpha=cfg.loss.focal_alpha, focal_gamma=cfg.loss.focal_gamma,
                             label_smoothing=cfg.loss.label_smoothing).to(run.device)
    swa_start = swa_start_epoch(cfg.epochs, cfg.swa.length) if cfg.swa.enabled else None
    if run.dist.is_main:
        log.info("schedule: %s", describe_schedule(cfg, swa_start, Snapshots(cfg.snapshots.count, cfg.epochs).epochs_at))
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
    if cfg.augment.specaugment and data.kind == "waveform":
        _spec_augment_inside(run)


def _spec_augment_inside(run: Run) -> None:
    """SpecAugment on waveform input: masked inside the networks that compute their own mel (a
    ``spec_augment`` attribute); refused for the others instead of silently skipped."""
    inside = [m for m in run.models if hasattr(m, "spec_augment")]
    if len(inside) < len(run.models):
        raise ConfigError(f"augment.specaugment masks a mel-spectrogram, but {run.cfg.model.name} takes a waveform "
                          f"({run.data.feature_config.name}) and computes no mel inside; set augment.specaugment = "
                          "false, or use a mel preset")
    hook = InModelSpecAugment(run.cfg.augment)
    for m in inside:
        m.spec_augment = hook
    run.augment.spec_hook = hook


def _resume(run: Run) -> None:
    """Networks, optimisers, schedules, strategies, counters and RNG from ``checkpoints/last.pt``."""
    cfg, state = run.cfg, run.state
    payload = load_checkpoint(run.last_path, map_location="cpu")
    tr = payload["training"]
    check_resumable(run, payload)
    if tr["optimizer_name"] != cfg.optim.name:
        run.optimizers = [build_optimizer(param_groups(m, cfg.init.body_lr_scale), cfg.optim, name=tr["optimizer_name"])
                          for m in run.models]
    for i, (m, sd) in enumerate(zip(run.models, tr["models"])):
        check_weights_fit(run, i, m.state_dict(), sd)
        m.load_state_dict(sd)
    for opt, sd in zip(run.optimizers, tr["optimizers"]):
        # the checkpoint's hyperparameters (weight decay, betas, momentum...) would replace the config's:
        # keep the config's, so that `--resume RUN --set optim.weight_decay=...` does what config.toml then says
        wanted = [{k: v for k, v in g.items() if k not in ("params", "lr", "initial_lr")} for g in opt.param_groups]
        opt.load_state_dict(sd)
        for group, values in zip(opt.param_groups, wanted):
            group.update(values)
    # optim.lr (switch_lr once switched to SGD) as configured now: a `--set optim.lr=...` on resume applies
    base_lr = (cfg.optim.switch_lr or cfg.optim.lr) if tr["optimizer_name"] != cfg.optim.name else cfg.optim.lr
    for sch, sd in zip(run.schedules, tr["schedules"]):
        sch.load_state_dict(sd)
        sch.base_lr = float(base_lr)
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
    state.val_preds = {k: (int(e), np.asarray(a)) for k, (e, a) in (tr.get("val_preds") or {}).items()}
    run.timer.load_state_dict(tr.get("timing"))
    ckpt.set_rng_state(tr["rng"])
    if state.epoch > cfg.epochs:
        raise ConfigError(f"{run.run_dir} has trained {state.epoch} epochs (checkpoints/last.pt), more than epochs = "
                          f"{cfg.epochs}; a run cannot be made shorter: resume it with --set epochs={state.epoch} (or "
                          "more), or train a new run into another --out folder")
    trained = state.epoch >= cfg.epochs or run.stopper.should_stop
    if trained and finalised(run.run_dir, state.epoch):
        if state.epoch < cfg.epochs:
            raise ConfigError(
                f"{run.run_dir} stopped early after epoch {state.epoch} (no better validation {run.metric} for "
                f"{run.stopper.bad_epochs} epochs, early_stopping.patience = {cfg.early_stopping.patience}) and is "
                f"finished; to train it on: musetag train --resume {run.run_dir} --set "
                f"early_stopping.patience={run.stopper.bad_epochs + max(1, cfg.early_stopping.patience)}")
        raise ConfigError(f"{run.run_dir} has finished its {cfg.epochs} epochs (checkpoints/last.pt is after epoch "
                          f"{state.epoch}); to train it longer: musetag train --resume {run.run_dir} --set "
                          f"epochs={state.epoch + max(1, cfg.epochs // 2)}")
    # every epoch trained but no summary.json for them (stopped during the final evaluation): finish the run
    run.stopped_early = trained and state.epoch < cfg.epochs
    if run.dist.is_main:
        rewrite_metrics(run.run_dir, state.history)
        if trained:
            log.info("resuming %s after its last epoch (%d): the final evaluation did not finish; finishing it",
                     run.run_dir, state.epoch)
        else:
            log.info("resuming %s at epoch %d, step %d", run.run_dir, state.epoch + 1, state.step)


def _wrap_networks(run: Run) -> None:
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
        wrapped = WithSegments(m) if hasattr(m, "forward_with_segments") else m
        if dist.enabled:
            wrapped = nn.parallel.DistributedDataParallel(
                wrapped, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            wrapped = torch.compile(wrapped)
        run.train_models.append(wrapped)


def _build_loader(run: Run) -> None:
    cfg, dist, data = run.cfg, run.dist, run.data
    run.per_rank_batch = cfg.data.batch_size // dist.world_size if dist.enabled else cfg.data.batch_size
    if dist.enabled and cfg.data.batch_size % dist.world_size:
        raise ConfigError(f"data.batch_size = {cfg.data.batch_size} is the global batch; it must be divisible "
                          f"by the {dist.world_size} processes")
    run.sampler = EpochSampler(len(data.splits["train"]), seed=cfg.seed, rank=dist.rank, world_size=dist.world_size,
                               min_samples=cfg.data.min_epoch_samples)
    _warn_tiny_epochs(len(run.sampler), run.per_rank_batch, len(data.splits["train"]), cfg)
    _warn_long_crop(data, cfg.data.crop)
    train_set = CropDataset(data, "train", cfg.data.crop)
    # own generator: creating an iterator never draws from the global RNG (exact resume)
    run.loader = DataLoader(train_set, batch_size=run.per_rank_batch, sampler=run.sampler,
                            num_workers=cfg.data.num_workers, collate_fn=collate, drop_last=cfg.data.drop_last,
                            generator=torch.Generator().manual_seed(cfg.seed), persistent_workers=False,
                            pin_memory=run.device.type == "cuda")


def _warn_long_crop(data: TrainingData, crop: int, look_at: int = 64) -> None:
    """Say so when ``data.crop`` is longer than every training track looked at (up to ``look_at``, spread over the
    split; only their headers are read): each example is then zero-padded up to the crop, mostly silence."""
    n = len(data.splits["train"])
    if not crop or not n:
        return
    picks = sorted({int(i) for i in np.linspace(0, n - 1, min(n, look_at))})
    longest = max(data.length("train", i) for i in picks)
    if crop > longest:
        unit = "samples" if data.kind == "waveform" else "frames"
        log.warning("data.crop = %d %s is longer than every training track looked at (%d of %d; the longest has %d): "
                    "each example is zero-padded to the crop, %d%% padding or more; set data.crop to %d or less "
                    "(--set data.crop=%d)", crop, unit, len(picks), n, longest, round(100 * (1 - longest / crop)),
                    longest, longest)


#: fewer optimiser steps per epoch than this, and epoch-counted settings lose their meaning
TINY_EPOCH_STEPS = 4


def _warn_tiny_epochs(items: int, batch: int, n_train: int, cfg: TrainConfig) -> None:
    """Say so when an epoch is one or two optimiser steps (a tiny training split and no
    ``data.min_epoch_samples``): freezing, patience, schedules and SWA then count almost nothing."""
    steps = -(-items // max(1, batch))
    if steps >= TINY_EPOCH_STEPS or cfg.data.min_epoch_samples:
        return
    if cfg.max_steps_per_epoch:  # capped on purpose: the cap, not the split, sets the epoch's length
        steps = min(steps, int(cfg.max_steps_per_epoch))
    counted = [*(["early stopping (patience %d epochs)" % cfg.early_stopping.patience]
                 if cfg.early_stopping.patience else []), "freezing", "the schedule"]
    log.warning("the training split has %d tracks: an epoch is %d optimiser step%s of %d, so %s count almost nothing; "
                "set data.min_epoch_samples = %d (--set data.min_epoch_samples=%d) to draw that many examples per epoch",
                n_train, steps, "" if steps == 1 else "s", batch, ", ".join(counted[:-1]) + " and " + counted[-1],
                8 * batch, 8 * batch)


def rewrite_metrics(run_dir: Path, history: list[dict]) -> None:
    """After a resume, metrics.jsonl holds exactly the epochs the checkpoint knows about."""
    with open(run_dir / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for record in history:
            fh.write(json.dumps(jsonable(record)) + "\n")
