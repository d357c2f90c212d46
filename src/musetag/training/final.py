"""The final model: every candidate the run has, and the choice among them on validation.

Candidates: ``last`` (the weights after the last epoch), ``best`` (the best validated epoch on the
reported metric), ``swa`` (the averaged weights), ``snapshots`` (the snapshots' averaged outputs)
and ``per_class`` (each tag from its own best epoch). :func:`final_candidates` gives each one's
validation and test predictions, reusing what the epochs already predicted (the last, best and
snapshot epochs' validation outputs are kept in :class:`~musetag.training.runstate.State`) and the
evaluation windows cut once per split. :func:`choose_final` picks the candidate with the highest
validation score on the task's reported metric (ties keep the configured ``final``), unless
``final_choice = "pinned"`` keeps ``final`` whatever validation says; it says which and why.
"""
from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from musetag.models.weights import load_checkpoint
from musetag.training import checkpoint as ckpt
from musetag.training import distributed as D
from musetag.training.config import TrainConfig, resolved_final
from musetag.training.data import CropDataset, EpochSampler, TrainingData, collate
from musetag.training.evaluation import split_scores
from musetag.training.runstate import Run
from musetag.training.swa import Snapshots

log = logging.getLogger("musetag.train")

#: the order candidates are listed (and ties after the preferred one are broken) in
ORDER = ("best", "last", "swa", "snapshots", "per_class")


def final_candidates(run: Run) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]], nn.Module | None]:
    """The configured final model (``final``, resolved) and the validation and test predictions of
    every candidate the run has; the SWA network when there is one."""
    cfg, state, swa = run.cfg, run.state, run.swa
    preferred = resolved_final(cfg)
    if preferred == "swa" and swa is not None and swa.n_averaged == 0:
        log.warning("SWA never started (stopped at epoch %d before epoch %d); using the best epoch instead",
                    state.epoch, swa.start_epoch + 1)
        preferred = "best"
    if preferred == "snapshots" and run.stopped_early:
        log.warning("training stopped early, snapshots are incomplete; averaging those taken")
    last_epoch = state.epoch - 1
    candidates: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def kept(name: str, epoch: int):
        entry = state.val_preds.get(name)
        return entry[1] if entry is not None and entry[0] == epoch else None

    def both(ms, ws, val=None):
        if val is None:
            val = run.predict(ms, ws, "validation")
        return val, run.predict(ms, ws, "test")

    candidates["last"] = both(run.models, run.weights, kept("last", last_epoch))
    best_epoch = run.stopper.best_epoch
    if best_epoch == last_epoch or best_epoch < 0:
        candidates["best"] = candidates["last"]  # the last epoch is the best one: same weights
    else:
        best_models = _load_best(run.models, run.ckpt_dir, run.dist, run.device)
        candidates["best"] = (both(best_models, run.weights, kept("best", best_epoch)) if best_models
                              else candidates["last"])
    swa_model = None
    if swa is not None and swa.n_averaged > 0:
        swa_model = swa.finalize(_bn_inputs(run.data, cfg, run.device), device=run.device)
        candidates["swa"] = both([swa_model], [1.0])
    if run.snapshots.count:
        snaps = _snapshot_predictions(run, last_epoch, candidates["last"], kept)
        if snaps:
            candidates["snapshots"] = (Snapshots.average([p[0] for p in snaps]),
                                       Snapshots.average([p[1] for p in snaps]))
    per_class = run.per_class
    if per_class is not None and "validation" in per_class.predictions:
        test_pc = per_class.predictions.get("test", np.zeros((0, run.data.n_classes), np.float32))
        candidates["per_class"] = (per_class.composite("validation"), test_pc)
    if preferred not in candidates:
        preferred = "best"
    return preferred, candidates, swa_model


def _snapshot_predictions(run: Run, last_epoch: int, last, kept) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each snapshot's (validation, test) predictions; the snapshot of the last epoch is ``last``
    (single network: the same weights)."""
    D.barrier(run.dist)
    out = []
    single = len(run.models) == 1
    for k, epoch in enumerate(run.snapshots.epochs_at):
        path = run.ckpt_dir / f"snapshot-{k}.pt"
        if not path.exists():
            continue
        if single and epoch == last_epoch:
            out.append(last)
            continue
        clone = copy.deepcopy(ckpt.unwrap(run.models[0]))
        clone.load_state_dict(load_checkpoint(path)["state_dict"])
        clone = clone.to(run.device)
        val = kept(f"snapshot-{k}", epoch) if single else None
        if val is None:
            val = run.predict([clone], [1.0], "validation")
        out.append((val, run.predict([clone], [1.0], "test")))
    return out


def choose_final(run: Run, preferred: str, candidates: dict) -> tuple[str, dict, dict]:
    """``(final, scores of every candidate, choice)``: the candidate with the best validation score on
    the reported metric, or ``preferred`` when pinned, when it ties, or without validation tracks.
    ``choice`` = {rule, preferred, chosen, metric, validation: {candidate: score}, reason}."""
    data, metric, cfg = run.data, run.metric, run.cfg
    scores = {name: {"validation": split_scores(v, data, "validation"), "test": split_scores(t, data, "test")}
              for name, (v, t) in candidates.items()}
    values = {name: s["validation"].get(metric, float("nan")) for name, s in scores.items()}
    finite = {name: v for name, v in values.items() if v is not None and math.isfinite(v)}
    order = [preferred] + [n for n in ORDER if n != preferred and n in candidates]
    if cfg.final_choice == "pinned":
        chosen, reason = preferred, f"final_choice = 'pinned': final = {cfg.final!r} is kept whatever validation says"
    elif not finite:
        chosen, reason = preferred, f"no validation {metric} to compare the candidates on; kept final = {preferred!r}"
    else:
        top = max(finite.values())
        chosen = next(n for n in order if finite.get(n) == top)
        if chosen == preferred:
            reason = (f"{preferred!r} (the configured final) has the best validation {metric}"
                      + (" among " + ", ".join(sorted(finite)) if len(finite) > 1 else ""))
        else:
            pref = finite.get(preferred)
            reason = (f"{chosen!r} has a higher validation {metric} ({top:.4f}) than the configured final "
                      f"{preferred!r} ({'n/a' if pref is None else f'{pref:.4f}'}); set final_choice = 'pinned' "
                      f"to keep {preferred!r}")
    choice = {"rule": cfg.final_choice, "preferred": preferred, "chosen": chosen, "metric": metric,
              "validation": {n: values[n] for n in order if n in values}, "reason": reason}
    if run.dist.is_main:
        log.info("final model: %s (%s)", chosen, reason)
    return chosen, scores, choice


def _load_best(models, ckpt_dir: Path, dist, device) -> list[nn.Module] | None:
    D.barrier(dist)
    out = []
    for i, m in enumerate(models):
        path = ckpt_dir / ("best.pt" if i == 0 else "peer_best.pt")
        if not path.exists():
            return None
        clone = copy.deepcopy(ckpt.unwrap(m))
        clone.load_state_dict(load_checkpoint(path)["state_dict"])
        out.append(clone.to(device))
    return out


def _bn_inputs(data: TrainingData, cfg: TrainConfig, device):
    """Training crops (no augmentation, fixed order) for recomputing SWA batch-norm statistics."""
    sampler = EpochSampler(len(data.splits["train"]), seed=cfg.seed + 1, shuffle=False)
    loader = DataLoader(CropDataset(data, "train", cfg.data.crop), batch_size=cfg.data.batch_size, sampler=sampler,
                        collate_fn=collate, num_workers=0, generator=torch.Generator().manual_seed(cfg.seed))
    for batch in loader:
        yield batch["x"].to(device)
