"""The training loop, top to bottom: setup -> epochs -> final model -> run folder.

:func:`train` is ``musetag.train``. A run is :func:`~musetag.training.setup.setup_run` (run folder,
data, networks, optimisation, resume, DDP wrappers, loader) -> :func:`_epochs` ->
:func:`~musetag.training.final.final_candidates` and :func:`~musetag.training.final.choose_final` ->
:func:`~musetag.training.results.write_results`, sharing one :class:`~musetag.training.runstate.Run`;
each strategy is a small piece they call (``_maybe_switch_to_sgd``, ``_track_best``,
``_per_class_step``, and the SWA, snapshot, co-teaching and stage-freezing objects).

One epoch (:func:`_epoch`) is :func:`~musetag.training.epoch.train_epoch` (augment, forward, loss,
backward, clip, step; co-teaching when a peer network is configured), then, on the epochs
``validate_every`` selects, the validation predictions (:mod:`musetag.training.evaluation`: windows
cut once per split, segments aggregated per track), then the bookkeeping: best epoch on the reported
metric, SWA averaging, snapshots, per-class early stopping, plateau schedule, metrics.jsonl and
``checkpoints/last.pt``. After the last epoch every final candidate (best / last / SWA / snapshots /
per-class) has validation and test predictions in the dataset's row order, the final model is chosen
on validation (unless pinned), thresholds are set on validation, and plots and ``summary.json``
(with where the time went) are written.

Run folder (docs/CONTRACTS.md)::

    RUN_DIR/config.toml                    resolved config
    RUN_DIR/metrics.jsonl                  one JSON object per epoch (epochs count from 1)
    RUN_DIR/summary.json                   final choice and why, best epoch, scores, decision rule, time
    RUN_DIR/checkpoints/{last,best,swa}.pt (+ peer_best.pt, snapshot-K.pt, epochs/ for per-class)
    RUN_DIR/predictions/{validation,test}.npy, {validation,test}_targets.npy, tags.txt
    RUN_DIR/plots/training.png
"""
from __future__ import annotations

import json
import time
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musetag.errors import ConfigError
from musetag.outputs import check_writable
from musetag.training import checkpoint as ckpt
from musetag.training import distributed as D
from musetag.training.config import TrainConfig
from musetag.training.recipes import load_config, load_toml_config
from musetag.training.data import TrainingData
from musetag.training.epoch import train_epoch
from musetag.training.evaluation import should_validate, split_scores
from musetag.training.final import choose_final, final_candidates
from musetag.training.lock import run_lock
from musetag.training.members import run_members
from musetag.training.recipe_checks import fit_to_task, set_keys
from musetag.training.results import write_results
from musetag.training.runstate import Run, RunResult, checkpoint_meta, jsonable
from musetag.training import probe
from musetag.training.param_groups import param_groups
from musetag.training.schedules import build_optimizer
from musetag.training.scoring import per_class_loss
from musetag.training.setup import check_models, epoch_seed, setup_run

__all__ = ["train", "RunResult", "check_models"]

log = logging.getLogger("musetag.train")


# ---------------------------------------------------------------------------------------------
# public entry points


def _quiet_off_terminal(sets: list[str] | None) -> bool:
    """Progress bars only on a terminal, as the commands do (``musetag.commands.show_progress``): whether a
    caller that does not set ``progress`` writes to a log file or a pipe (then it trains with ``progress=false``)."""
    import sys

    from musetag.training.config import check_sets

    return "progress" not in set_keys(check_sets(sets)) and not getattr(sys.stderr, "isatty", lambda: False)()


def train(config: TrainConfig | dict | str | Path | None = None, *, data: str | Path | None = None,
          out: str | Path | None = None, sets: list[str] | None = None, resume: str | Path | None = None,
          training_data: TrainingData | None = None) -> RunResult:
    """Train a model; the Python form of ``musetag train``.

    ``config``: a :class:`TrainConfig`, a dict, a recipe name or a TOML path. ``data``: the dataset
    TOML (sets ``data.dataset``). ``out``: the run folder (sets ``out``). ``sets``: ``key=value``
    overrides. ``resume``: a run folder to continue from its ``checkpoints/last.pt`` (its
    ``config.toml`` is used; ``config`` must then be None). Without ``progress`` in ``sets``, progress bars
    are drawn only when stderr is a terminal.
    """
    quiet = _quiet_off_terminal(sets)
    if resume is not None:
        if config is not None:
            raise ConfigError("resume takes the run folder's own config.toml; do not pass a recipe too")
        run_dir = Path(resume)
        cfg = load_toml_config(run_dir / "config.toml")
        if sets:
            cfg = cfg.replace(sets=sets)
        cfg = cfg.replace({"out": str(run_dir), **({"progress": False} if quiet else {})})
        if probe.route(cfg):
            raise ConfigError(f"{run_dir} is a probe run (fitted in seconds, nothing to resume); train it again "
                              "into a new --out folder")
        check_writable(run_dir, folder=True, flag="--resume")
        with run_lock(run_dir):
            if cfg.members:
                # --resume ENSEMBLE --set ...: the members are the runs, so the options apply to them (as when it started)
                member_sets = [item for item in sets or [] if item.split("=", 1)[0].strip() not in ("members", "member_sets", "progress")]
                if member_sets:  # (run_members records them in config.toml once every member accepts them)
                    cfg = cfg.replace({"member_sets": list(cfg.member_sets) + member_sets})
                return run_members(cfg, run_dir, _run, training_data=training_data)
            return _run(cfg, run_dir, resume=True, training_data=training_data)
    overrides: dict[str, Any] = {}
    if data is not None:
        overrides["data"] = {"dataset": str(Path(data).resolve())}
    if out is not None:
        overrides["out"] = str(out)
    if quiet:
        overrides["progress"] = False
    cfg = load_config(config, sets=sets, overrides=overrides)
    if cfg.data.dataset and not Path(cfg.data.dataset).is_absolute():
        cfg = cfg.replace({"data": {"dataset": str(Path(cfg.data.dataset).resolve())}})
    if not cfg.out:
        raise ConfigError("no run folder: pass --out RUN_DIR (or out= in Python)")
    cfg = fit_to_task(cfg, pinned=set_keys(sets), quiet=bool(cfg.members))  # before any data is read
    run_dir = Path(cfg.out)
    check_writable(run_dir, folder=True)
    with run_lock(run_dir):  # checked under the lock: two processes cannot both find the folder free
        if (run_dir / "checkpoints" / "last.pt").exists() or any((run_dir / "members").glob("*/checkpoints/last.pt")):
            raise ConfigError(
                f"{run_dir} already holds a training run; continue it with `musetag train --resume {run_dir}` "
                "or choose another --out folder"
            )
        if probe.route(cfg):  # embeddings + probe: fitted by musetag.training.probe, not the epoch loop
            if cfg.model.name == "probe_auto":  # the recipe probe-auto: chosen by cross-validation
                from musetag.training.probe_auto import train_probe_auto

                return train_probe_auto(cfg, run_dir, runner=_run)  # _run: select.finetune's fine-tunes
            return probe.train_probe(cfg, run_dir)
        if cfg.members:
            # --set options apply to every member (except those choosing the members themselves)
            member_sets = [item for item in sets or [] if item.split("=", 1)[0].strip() not in ("members", "member_sets")]
            cfg = cfg.replace({"member_sets": member_sets})
            return run_members(cfg, run_dir, _run, training_data=training_data)
        return _run(cfg, run_dir, resume=False, training_data=training_data)


# ---------------------------------------------------------------------------------------------
# the run


def _run(cfg: TrainConfig, run_dir: Path, *, resume: bool, training_data: TrainingData | None = None) -> RunResult:
    device_type = "cuda" if (cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())) else "cpu"
    dist = D.setup(device_type)
    try:
        return _run_inner(cfg, run_dir, resume=resume, dist=dist, training_data=training_data)
    finally:
        D.teardown(dist)


def _run_inner(cfg: TrainConfig, run_dir: Path, *, resume: bool, dist: D.DistInfo,
               training_data: TrainingData | None) -> RunResult:
    run = setup_run(cfg, Path(run_dir), resume=resume, dist=dist, training_data=training_data)
    _epochs(run)
    with run.timer.phase("final_evaluation"):
        preferred, candidates, swa_model = final_candidates(run)
        final, scores, choice = choose_final(run, preferred, candidates)
    return write_results(run, final, candidates, swa_model, scores, choice)


def _training_payload(run: Run) -> dict:
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
        "val_preds": {k: [e, np.asarray(a, np.float32)] for k, (e, a) in state.val_preds.items()},
        "timing": run.timer.state_dict(),
    }


def _save_last(run: Run, *, mid_epoch: bool = False) -> None:
    """``checkpoints/last.pt``: the model plus everything resume needs (rank 0 writes, all wait). Its ``epoch`` is
    the epoch its weights come from, counted from 0 as in best.pt and swa.pt (``training.epoch``, what resume
    reads, counts the finished epochs)."""
    if run.dist.is_main:
        model = run.models[0]
        epoch = run.state.epoch if mid_epoch else run.state.epoch - 1
        payload = ckpt.model_payload(model, meta=checkpoint_meta(model, run.data, run.cfg), kind="last", epoch=epoch)
        payload["training"] = _training_payload(run)
        ckpt.save_checkpoint(payload, run.last_path)
    D.barrier(run.dist)


def _epochs(run: Run) -> None:
    """Train until ``cfg.epochs`` or early stopping; ``last.pt`` after every epoch."""
    cfg, state = run.cfg, run.state
    while state.epoch < cfg.epochs and not run.stopped_early:  # stopped_early: set by a resume of a stopped run
        record = _epoch(run, state.epoch)
        state.history.append(record)
        if run.dist.is_main:
            with open(run.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(jsonable(record)) + "\n")
        state.epoch += 1
        state.step = 0
        state.partial = {"loss_sum": 0.0, "count": 0}
        with run.timer.phase("checkpoints"):
            _save_last(run)
        if run.stopper.should_stop:
            run.stopped_early = True
            if run.dist.is_main:
                log.info("early stopping: no better validation %s for %d epochs", run.metric, run.stopper.patience)
            break


def _epoch(run: Run, epoch: int) -> dict:
    """One epoch: train, validate (on the epochs ``validate_every`` selects), then each strategy's
    bookkeeping; the metrics.jsonl record (``epoch`` counts from 1, as the log does)."""
    cfg, state, dist, metric = run.cfg, run.state, run.dist, run.metric
    _maybe_switch_to_sgd(run, epoch)
    for freezer in run.freezers:
        freezer.apply(epoch)
    if state.step == 0:
        torch.manual_seed(epoch_seed(cfg.seed, epoch, dist.rank))
        state.partial = {"loss_sum": 0.0, "count": 0}
    run.sampler.set_epoch(epoch, start=state.step * run.per_rank_batch)
    with run.timer.phase("training"):
        train_loss = train_epoch(epoch, models=run.train_models, optimizers=run.optimizers, schedules=run.schedules,
                                 loader=run.loader, sampler=run.sampler, loss_fn=run.loss_fn, augment=run.augment,
                                 cfg=cfg, data=run.data, device=run.device, dist=dist, autocast=run.autocast,
                                 scaler=run.scaler, state=state, save_mid_epoch=lambda: _save_last(run, mid_epoch=True))
    groups = run.optimizers[0].param_groups
    # the schedule's lr (the classifier's group); with init.body_lr_scale the body's scaled lr beside it
    lr = next((g["lr"] for g in groups if g.get("lr_scale", 1.0) == 1.0), groups[0]["lr"])
    record = {"epoch": epoch + 1, "train_loss": train_loss, "lr": lr, "optimizer": state.optimizer_name}
    if any(g.get("lr_scale", 1.0) != 1.0 for g in groups):
        record["lr_body"] = next(g["lr"] for g in groups if g.get("lr_scale", 1.0) != 1.0)
    validate = should_validate(epoch, cfg.epochs, cfg.validate_every)
    val: dict = {}
    is_best = False
    if validate:
        with run.timer.phase("validation"):
            val_pred = run.predict(run.models, run.weights, "validation")
            val = split_scores(val_pred, run.data, "validation")
            record.update({f"val_{k}": v for k, v in val.items()})
            if len(run.models) > 1:
                for i, m in enumerate(run.models):
                    single = split_scores(run.predict([m], [1.0], "validation"), run.data, "validation")
                    record[f"val_{metric}_model{i}"] = single.get(metric)
        state.val_preds["last"] = (epoch, val_pred)
        with run.timer.phase("checkpoints"):
            is_best = _track_best(run, epoch, val.get(metric, float("nan")), val)
        if is_best:
            state.val_preds["best"] = (epoch, val_pred)
    record["best"] = is_best
    if run.swa is not None and run.swa.update(run.models[0], epoch):
        record["swa_models"] = run.swa.n_averaged
    if run.snapshots.is_snapshot(epoch):
        k = run.snapshots.index(epoch)
        if validate:
            state.val_preds[f"snapshot-{k}"] = (epoch, val_pred)
        if dist.is_main:
            with run.timer.phase("checkpoints"):
                run.save(run.models[0], f"snapshot-{k}.pt", "snapshot", epoch, metrics=val or None)
        record["snapshot"] = k
    if run.per_class is not None and validate:
        with run.timer.phase("validation"):
            record["per_class_improved"] = _per_class_step(run, epoch, val_pred)
    for s in run.schedules:
        s.end_epoch(val.get("loss"))
    record["time"] = round(time.time() - run.t0, 2)
    if dist.is_main:
        if validate:
            extra = "".join(f"  {k} {val[k]:.4f}" for k in ("f1_macro", "balanced_accuracy") if k in val)
            log.info("epoch %d/%d  train loss %.4f  val loss %.4f  val %s %.4f%s%s  lr %.3g", epoch + 1, cfg.epochs,
                     train_loss, val.get("loss", float("nan")), metric, val.get(metric, float("nan")), extra,
                     "  (best)" if is_best else "", lr)
        else:
            log.info("epoch %d/%d  train loss %.4f  (not validated: validate_every = %d)  lr %.3g", epoch + 1,
                     cfg.epochs, train_loss, cfg.validate_every, lr)
    return record


def _maybe_switch_to_sgd(run: Run, epoch: int) -> None:
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


def _track_best(run: Run, epoch: int, value: float, val: dict) -> bool:
    """Early stopping on the reported metric; ``best.pt`` (and ``peer_best.pt``) when it improves."""
    is_best = run.stopper.update(value, epoch)
    if is_best and run.dist.is_main:
        for i, m in enumerate(run.models):
            name = "best.pt" if i == 0 else "peer_best.pt"
            run.save(m, name, name[:-3], epoch, metrics=val)
    return is_best


def _per_class_step(run: Run, epoch: int, val_pred: np.ndarray) -> int:
    """Per-class early stopping: keep each class's predictions from its best epoch; the number improved."""
    data, per_class = run.data, run.per_class
    improved = per_class.update(per_class_loss(val_pred, data.splits["validation"].targets, data.task), epoch)
    if improved.any():
        per_class.store("validation", val_pred, improved)
        if len(data.splits["test"]):
            per_class.store("test", run.predict(run.models, run.weights, "test"), improved)
        if run.dist.is_main:
            run.save(run.models[0], f"epochs/epoch-{epoch + 1:04d}.pt", "epoch", epoch)  # named 1-based
            _prune_epochs(run.ckpt_dir / "epochs", [e + 1 for e in per_class.epochs_in_use()])
    return int(improved.sum())


def _prune_epochs(folder: Path, keep: list[int]) -> None:
    keep_names = {f"epoch-{e:04d}.pt" for e in keep}
    for path in folder.glob("epoch-*.pt"):
        if path.name not in keep_names:
            path.unlink(missing_ok=True)
