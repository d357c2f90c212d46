"""The run folder's results: predictions (with their tag names), decision thresholds in the
checkpoints, ``summary.json`` and the training plots (:func:`write_results`, rank 0)."""
from __future__ import annotations

import json
import logging
import time

import numpy as np
from torch import nn

from musetag.models.weights import load_checkpoint
from musetag.outputs import write_text_atomic
from musetag.training import checkpoint as ckpt
from musetag.training import distributed as D
from musetag.training.decisions import decision_thresholds
from musetag.training.runstate import Run, RunResult, jsonable
from musetag.training.scoring import confusion

log = logging.getLogger("musetag.train")


def write_results(run: Run, final: str, candidates: dict, swa_model: nn.Module | None, scores: dict,
                  choice: dict) -> RunResult:
    """Predictions, thresholds in the checkpoints, summary.json and plots (rank 0); the RunResult."""
    data, state, metric = run.data, run.state, run.metric
    val_scores, test_scores = scores[final]["validation"], scores[final]["test"]
    with run.timer.phase("final_evaluation"):
        thresholds, decision = _thresholds(run, candidates[final][0])
    best_epoch = run.stopper.best_epoch + 1  # 1-based, as the log counts (0: no epoch validated)
    if run.dist.is_main:
        with run.timer.phase("writing"):
            write_predictions(run, final, candidates)
            package_ckpt = _write_thresholds(run, final, candidates, swa_model, thresholds, scores)
            _plot(run)
        summary = {
            "recipe": run.cfg.recipe, "task": data.task, "metric": metric, "final": final, "final_choice": choice,
            "checkpoint": f"checkpoints/{package_ckpt}",
            "best_epoch": best_epoch, "epochs_run": state.epoch, "stopped_early": run.stopped_early,
            "validate_every": run.cfg.validate_every,
            "validation": val_scores, "test": test_scores, "candidates": scores,
            "tags": list(data.tags), "n_tracks": {k: len(v) for k, v in data.splits.items()},
        }
        if decision is not None:
            summary["decision"] = decision
        if data.task == "multiclass":
            summary["confusion_matrix"] = {
                split: confusion(candidates[final][i], data.splits[split].targets, list(data.tags))
                for i, split in enumerate(("validation", "test")) if len(data.splits[split])}
        if run.per_class is not None:
            summary["per_class_best_epoch"] = [int(e) + 1 for e in run.per_class.best_epoch]
        summary["time"] = run.timer.summary()
        summary["seconds"] = round(time.time() - run.t0, 1)
        summary["world_size"] = run.dist.world_size
        write_text_atomic(run.run_dir / "summary.json", json.dumps(jsonable(summary), indent=2))
        log.info("done: final = %s, validation %s %.4f, test %s %s%s", final, metric,
                 val_scores.get(metric, float("nan")), metric,
                 f"{test_scores[metric]:.4f}" if metric in test_scores else "n/a", _also(val_scores, data.task))
        log.info("time: %s", run.timer.describe())
    D.barrier(run.dist)
    return RunResult(run.run_dir, final, metric, best_epoch, val_scores, test_scores, state.epoch, state.history)


def _plot(run: Run) -> None:
    try:
        from musetag.training.plots import plot_training_curves

        plot_training_curves(run.state.history, run.run_dir / "plots", metric=run.metric)
    except Exception as exc:  # noqa: BLE001 - plots never lose a finished run
        log.warning("could not draw the training plots: %s", exc)


def _also(val: dict, task: str) -> str:
    if task != "multiclass":
        return ""
    return "; validation " + ", ".join(f"{k} {val[k]:.4f}" for k in ("f1_macro", "balanced_accuracy") if k in val)


def _thresholds(run: Run, val_pred: np.ndarray) -> tuple[list[float] | None, dict | None]:
    data = run.data
    if data.task != "multilabel" or not len(data.splits["validation"]):
        return None, None
    return decision_thresholds(run.cfg.decision, val_pred, data.splits["validation"].targets,
                               data.splits["train"].targets, tags=list(data.tags))


def write_predictions(run: Run, final: str, candidates: dict) -> None:
    """``predictions/``: the final model's outputs, targets and track ids per split, the other
    candidates' outputs, and ``tags.txt`` (the column names of every matrix, one per line)."""
    data = run.data
    pred_dir = run.run_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    (pred_dir / "tags.txt").write_text("\n".join(data.tags) + "\n", encoding="utf-8")
    val_final, test_final = candidates[final]
    for split, arr in (("validation", val_final), ("test", test_final)):
        np.save(pred_dir / f"{split}.npy", arr.astype(np.float32))
        np.save(pred_dir / f"{split}_targets.npy", data.splits[split].targets)
        (pred_dir / f"{split}_ids.txt").write_text("\n".join(data.splits[split].ids) + "\n", encoding="utf-8")
    for name, (v, t) in candidates.items():
        if name != final:
            np.save(pred_dir / f"{name}-validation.npy", v.astype(np.float32))
            np.save(pred_dir / f"{name}-test.npy", t.astype(np.float32))


def _write_thresholds(run: Run, final: str, candidates: dict, swa_model, thresholds, scores) -> str:
    """Checkpoints carry the thresholds of their predictions (same decision rule); the checkpoint to package."""
    ckpt_dir = run.ckpt_dir
    if swa_model is not None:
        swa_th = thresholds if final == "swa" else _thresholds(run, candidates["swa"][0])[0]
        run.save(swa_model, "swa.pt", "swa", run.state.epoch - 1, metrics=scores["swa"]["validation"],
                 thresholds=swa_th, meta_model=run.models[0])
    best_path = ckpt_dir / "best.pt"
    if best_path.exists():
        payload = load_checkpoint(best_path)
        payload["thresholds"] = thresholds if final == "best" else _thresholds(run, candidates["best"][0])[0]
        ckpt.save_checkpoint(payload, best_path)
    if run.last_path.exists():  # `package --checkpoint last` decides as the last epoch's validation says
        payload = load_checkpoint(run.last_path)
        payload["thresholds"] = thresholds if final == "last" else _thresholds(run, candidates["last"][0])[0]
        ckpt.save_checkpoint(payload, run.last_path)
    return {"swa": "swa.pt", "last": "last.pt"}.get(final, "best.pt")
