"""Fit a probe (:mod:`musetag.models.probe`) on cached track embeddings: ``musetag train`` with a
``probe_*`` model on a dataset whose ``preset = "embed:MODEL"`` (:mod:`musetag.data.embed_features`).

The fit is the textbook one, not the epoch loop: full-batch L-BFGS (float64) on

    mean over tracks of the loss  +  ||weights||^2 / (2 C n)

(cross-entropy for multiclass tasks, binary cross-entropy summed over tags for multilabel ones, half
the squared error summed over targets for regression, i.e. ridge with ``alpha = 1 / C``; biases are
not penalised), i.e. scikit-learn's ``LogisticRegression(C=C)`` objective divided by
``C n``. Inputs are standardised with the training split's per-dimension mean and std (stored in
the probe). Every ``C`` of ``probe.grid`` is fitted on the training split; the one with the best
validation score (accuracy / PR-AUC-macro; ties: the lower validation loss) is kept, logged and
recorded in ``summary.json`` (``probe``) together with the whole grid.

The run folder has the layout of any training run (``config.toml``, ``checkpoints/best.pt`` (also
``last.pt``), ``predictions/``, ``summary.json``; no ``metrics.jsonl``: there are no epochs), so ``score``,
``report`` and ``package`` work on it.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musetag.errors import ConfigError
from musetag.outputs import write_text_atomic

log = logging.getLogger(__name__)

PROBE_PREFIX = "probe_"


def is_probe_model(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PROBE_PREFIX) and name != "probe_on_backbone"


def route(cfg) -> bool:
    """Whether ``cfg`` is a probe run (fitted here, not by the epoch loop). A probe on audio features,
    or another model on embedding features, is an error naming the fix."""
    if cfg.model.name == "probe_auto":  # musetag.training.probe_auto embeds with the backbones it tries
        return True
    probe = is_probe_model(cfg.model.name)
    embed = False
    if cfg.data.dataset and not cfg.features:
        from musetag.data import load_dataset_config
        from musetag.data.embed_features import is_embed_preset

        embed = is_embed_preset(load_dataset_config(cfg.data.dataset).preset)
    elif isinstance(cfg.features.get("preset"), str):
        embed = cfg.features["preset"].startswith("embed:")
    if probe and not embed:
        raise ConfigError(
            f"model {cfg.model.name!r} learns from track embeddings: give a dataset with preset = \"embed:MODEL\" "
            "(e.g. embed:jamendo-musicnn) and no [features] in the recipe"
        )
    if embed and not probe:
        raise ConfigError(
            f"{cfg.data.dataset}: preset \"embed:...\" holds one embedding per track; train a probe on it "
            f"(recipe probe-linear or probe-mlp), not {cfg.model.name!r}"
        )
    return probe


def _check(cfg) -> list[float]:
    grid = cfg.probe.grid
    if not grid or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 and math.isfinite(c)
                            for c in grid):
        raise ConfigError(f"probe.grid = {grid!r}: give positive numbers C (inverse L2 strength), e.g. [0.01, 0.1, 1]")
    if int(cfg.probe.max_iter) < 1:
        raise ConfigError(f"probe.max_iter = {cfg.probe.max_iter!r}: give a positive number of L-BFGS iterations")
    return [float(c) for c in grid]


def _penalised(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p for name, p in model.named_parameters() if name.endswith("weight")]


def objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, c: float) -> torch.Tensor:
    """The penalised mean loss the fit minimises (see the module docstring)."""
    logits = model(x)
    if task == "multiclass":
        loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
    elif task == "regression":  # half the squared error: a linear probe is ridge with alpha = 1 / C
        loss = 0.5 * torch.nn.functional.mse_loss(logits, y, reduction="sum")
    else:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
    penalty = sum(w.pow(2).sum() for w in _penalised(model))
    return (loss + 0.5 * penalty / c) / x.shape[0]


def fit(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, task: str, c: float, *, max_iter: int = 500) -> torch.nn.Module:
    """Fit ``model`` (a probe, standardisation already set) in place by full-batch L-BFGS; returns it (float32)."""
    model.double().eval()
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    yt = torch.as_tensor(y, dtype=torch.long if task == "multiclass" else torch.float64)
    opt = torch.optim.LBFGS([p for p in model.parameters() if p.requires_grad], lr=1.0, max_iter=int(max_iter),
                            history_size=20, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = objective(model, xt, yt, task, c)
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(closure)
    return model.float()


def predict(model: torch.nn.Module, x: np.ndarray, task: str) -> np.ndarray:
    """Probabilities ``(tracks, classes)``: softmax (multiclass) or sigmoid (multilabel); the
    values themselves for regression."""
    with torch.no_grad():
        logits = model(torch.as_tensor(np.asarray(x, dtype=np.float32)))
        if task == "regression":
            return logits.numpy().astype(np.float32)
        probs = torch.softmax(logits, -1) if task == "multiclass" else torch.sigmoid(logits)
    return probs.numpy().astype(np.float32)


def build_probe(name: str, args: dict, n_classes: int, x_train: np.ndarray, seed: int):
    """A fresh probe for ``x_train``'s width, standardised with its per-dimension statistics."""
    from musetag.models import create_model

    torch.manual_seed(seed)
    args = {k: v for k, v in dict(args).items() if k not in ("dim", "n_classes", "in_channels")}
    model = create_model(name, n_classes=n_classes, dim=int(x_train.shape[1]), **args)
    model.set_standardisation(torch.as_tensor(x_train.mean(0)), torch.as_tensor(x_train.std(0)))
    return model


def _log_loss(probs: np.ndarray, y: np.ndarray, task: str) -> float:
    if task == "regression":  # mean squared error per track, summed over targets
        return float(((probs - y) ** 2).sum(1).mean()) if len(y) else float("nan")
    p = np.clip(probs.astype(np.float64), 1e-12, 1 - 1e-12)
    if task == "multiclass":
        return float(-np.log(p[np.arange(len(y)), y]).mean()) if len(y) else float("nan")
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(1).mean()) if len(y) else float("nan")


def select(name: str, args: dict, task: str, n_classes: int, x_train, y_train, x_val, y_val, *, grid: list[float],
           max_iter: int = 500, seed: int = 0) -> tuple[torch.nn.Module, float, list[dict[str, Any]]]:
    """Fit one probe per ``C`` of ``grid``; the best on validation, its ``C`` and the grid's scores."""
    from musetag.training.scoring import reported_metric, score

    metric = reported_metric(task)
    rows, best = [], None
    for c in grid:
        model = fit(build_probe(name, args, n_classes, x_train, seed), x_train, y_train, task, c, max_iter=max_iter)
        val = predict(model, x_val, task)
        value = score(val, y_val, task).get(metric, float("nan"))
        loss = _log_loss(val, y_val, task)
        rows.append({"C": c, metric: value, "validation_loss": loss})
        log.info("probe %s C=%g: validation %s %.4f, loss %.4f", name, c, metric, value, loss)
        key = (-np.inf if math.isnan(value) else value, -loss)
        if best is None or key > best[0]:
            best = (key, c, model)
    return best[2], best[1], rows


def _splits(data) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for role, split in data.splits.items():
        x = (np.stack([np.load(p).reshape(-1) for p in split.paths]).astype(np.float32) if len(split)
             else np.zeros((0, 1), np.float32))
        out[role] = (x, split.targets)
    return out


def write_probe_run(run_dir: Path, model, meta: dict, val_scores: dict, preds: dict, targets: dict, ids: dict) -> None:
    """A fitted probe's run folder: ``checkpoints/best.pt`` (= ``last.pt``) and the validation and test
    predictions with their targets, track ids and column names (shared by probe runs and ``probe-auto``)."""
    from musetag.training import checkpoint as ckpt

    ckpt.save_checkpoint(ckpt.model_payload(model, meta=meta, kind="best", epoch=0, metrics=val_scores),
                         run_dir / "checkpoints" / "best.pt")
    shutil.copyfile(run_dir / "checkpoints" / "best.pt", run_dir / "checkpoints" / "last.pt")
    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(exist_ok=True)
    # the matrices' column names, as a trained run writes them (`musetag score` names tags from it)
    (pred_dir / "tags.txt").write_text("\n".join(meta["tags"]) + "\n", encoding="utf-8")
    for role in ("validation", "test"):
        np.save(pred_dir / f"{role}.npy", preds[role])
        np.save(pred_dir / f"{role}_targets.npy", targets[role])
        (pred_dir / f"{role}_ids.txt").write_text("\n".join(ids[role]) + "\n", encoding="utf-8")


def _warn_unpackable(spec: str | None) -> None:
    """Warn at the start of a probe run on ``embed:a+b`` whose backbones hear the audio differently (front end,
    segment or window rule): ``musetag package`` refuses such a run, so it can be scored but never tag audio."""
    from musetag.inference.embed_spec import split_spec
    from musetag.inference.probe_package import same_front

    parts = split_spec(spec or "")
    for part in parts[1:]:
        try:
            same = same_front(parts[0], part)
        except Exception:  # noqa: BLE001 - a backbone that cannot be loaded here is package's to report
            continue
        if not same:
            log.warning("the backbones %s and %s hear the audio differently (front end or segment rule), so "
                        "`musetag package` will refuse this run: it can be scored, not tag audio; for a package, "
                        "combine backbones with one front end (e.g. jamendo-fcn+msd-fcn) or use one backbone",
                        parts[0], part)
            return


def train_probe(cfg, run_dir: Path):
    """``musetag train`` for a probe recipe: the run folder and a :class:`~musetag.training.runstate.RunResult`."""
    from musetag.training.recipes import dump_toml
    from musetag.training.data import load_training_data, warn_unlearnable
    from musetag.training.runstate import RunResult
    from musetag.evaluate.thresholds import fit_thresholds
    from musetag.training.scoring import reported_metric, score

    t0 = time.time()
    grid = _check(cfg)
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    dump_toml(cfg, run_dir / "config.toml", header=f"resolved musetag training config (recipe: {cfg.recipe or 'custom'})")
    data = load_training_data(cfg.replace({"data": {"normalize": False}}), run_dir, progress=cfg.progress)
    warn_unlearnable(data)
    _warn_unpackable(data.feature_config.embed)
    arrays = _splits(data)
    (x_tr, y_tr), (x_va, y_va) = arrays["train"], arrays["validation"]
    metric = reported_metric(data.task)
    log.info("probe %s on %d train / %d validation / %d test tracks, %s (%d-d); C grid %s",
             cfg.model.name, len(x_tr), len(x_va), len(arrays["test"][0]), data.feature_config.describe(),
             x_tr.shape[1], grid)
    model, chosen, rows = select(cfg.model.name, cfg.model.args, data.task, data.n_classes, x_tr, y_tr, x_va, y_va,
                                 grid=grid, max_iter=cfg.probe.max_iter, seed=cfg.seed)
    preds = {role: predict(model, x, data.task) if len(x) else np.zeros((0, data.n_classes), np.float32)
             for role, (x, _) in arrays.items()}
    val_scores = score(preds["validation"], y_va, data.task)
    test_scores = score(preds["test"], arrays["test"][1], data.task) if len(arrays["test"][0]) else {}
    thresholds = fit_thresholds(preds["validation"], y_va, tags=list(data.tags), keep_f1=True) if data.task == "multilabel" else None
    features = data.feature_config.replace(mean=None, std=None).to_dict()
    meta = {"model": model.musetag_config, "features": features, "tags": list(data.tags), "task": data.task,
            "segment": {"frames": 1, "hop": 1, "aggregation": "mean", "max_segments": 0},
            "thresholds": None if thresholds is None else [float(t) for t in thresholds]}
    write_probe_run(run_dir, model, meta, val_scores, preds,
                    {role: data.splits[role].targets for role in ("validation", "test")},
                    {role: data.splits[role].ids for role in ("validation", "test")})
    probe_info = {"C": chosen, "chosen_on": f"validation {metric}", "grid": rows,
                  "objective": "mean loss + ||W||^2 / (2 C n) (scikit-learn's C), L-BFGS",
                  "embedding": data.feature_config.embed, "dim": int(x_tr.shape[1])}
    summary = {"recipe": cfg.recipe, "task": data.task, "metric": metric, "final": "best",
               "checkpoint": "checkpoints/best.pt", "best_epoch": 1, "epochs_run": 1, "stopped_early": False,
               "validation": val_scores, "test": test_scores,
               "candidates": {"best": {"validation": val_scores, "test": test_scores}},
               "tags": list(data.tags), "n_tracks": {k: len(v) for k, v in data.splits.items()},
               "seconds": round(time.time() - t0, 1), "world_size": 1, "probe": probe_info}
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2, default=float))
    log.info("done: probe C = %g chosen on validation %s %.4f; test %s %s", chosen, metric,
             val_scores.get(metric, float("nan")), metric,
             f"{test_scores[metric]:.4f}" if metric in test_scores else "n/a")
    return RunResult(run_dir, "best", metric, 1, val_scores, test_scores, 1, [])  # its one "epoch", as summary.json says
