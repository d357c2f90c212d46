"""Fine-tuning as one more cross-validated candidate (``select.finetune`` of ``musetag train probe-auto``).

:func:`cross_validate_finetune` scores a fine-tuning recipe (``smalldata-finetune-musicnn`` by default)
on the folds the probes are scored on: for each fold of train+validation it trains the recipe, from its
pretrained backbone, on the fold's training tracks for a fixed number of epochs and predicts the
held-out tracks. Nothing is chosen on the held-out fold: the final model is the last epoch
(``final = "last"``, ``final_choice = "pinned"``, no SWA), validated once, after the last epoch
(``validate_every = epochs``), so the held-out predictions are honest out-of-fold predictions and the
candidate's CV score is computed exactly as a probe's (:func:`musetag.training.probe_cv.metric_on`).

:func:`finetune_candidate` is probe-auto's hook: when the fine-tune's CV score beats the best probe's,
the recipe is trained on train+validation into the run folder (validation and test predicted once at
the end) and its summary gets probe-auto's ``select`` table; otherwise the probe choice goes on and
the fine-tune's figures are written to ``RUN_DIR/finetune-cv.json``. It costs CPU hours on a laptop
(about folds + 1 fine-tunes), which is why ``select.finetune`` is off by default.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from musetag.errors import ConfigError
from musetag.outputs import write_text_atomic
from musetag.training.probe_cv import Candidate, metric_on

log = logging.getLogger(__name__)

HEAD = "finetune"


def fixed_length_sets(recipe: str, sets: list[str] | None = None) -> list[str]:
    """``sets`` plus what makes a run choose nothing on its validation split: the last epoch, validated once."""
    from musetag.training.recipes import load_config

    sets = list(sets or [])
    epochs = int(load_config(recipe, sets=sets).epochs)
    return [*sets, "final=last", "final_choice=pinned", "swa.enabled=false", f"validate_every={epochs}",
            "progress=false"]


def load_pool(recipe: str, dataset: str | Path, sets: list[str] | None = None, run_dir: Path | None = None):
    """The recipe's :class:`~musetag.training.data.TrainingData` of ``dataset`` (its features cached once)."""
    from musetag.training.recipes import load_config
    from musetag.training.data import load_training_data

    cfg = load_config(recipe, sets=list(sets or []), overrides={"data": {"dataset": str(Path(dataset).resolve())}})
    return load_training_data(cfg, run_dir, progress=False)


def _subset(split, idx, name: str):
    from musetag.training.data import SplitData

    idx = np.asarray(idx, dtype=np.int64)
    return SplitData(name, [split.ids[i] for i in idx], [split.paths[i] for i in idx], split.targets[idx])


def pooled_split(data):
    """train + validation of ``data`` as one split, in that order (probe-auto's order of tracks)."""
    from musetag.training.data import SplitData

    tr, va = data.splits["train"], data.splits["validation"]
    return SplitData("train", tr.ids + va.ids, tr.paths + va.paths, np.concatenate([tr.targets, va.targets]))


def with_splits(data, train, validation, test=None):
    """A copy of ``data`` with other splits (the same features, cache and normalisation)."""
    if test is None:
        test = _subset(data.splits["train"], [], "test")
    return dataclasses.replace(data, splits={"train": train, "validation": validation, "test": test}, _maps={})


def train_on(recipe: str, dataset, data, out: Path, sets: list[str], runner):
    """One fine-tune of ``recipe`` on ``data``'s splits into ``out`` (a fresh run folder). ``runner``: the epoch
    loop's ``musetag.training.loop._run`` (passed in: the loop imports probe-auto, which imports this module)."""
    from musetag.training.recipes import load_config
    from musetag.training.recipe_checks import fit_to_task, set_keys

    out = Path(out)
    if (out / "checkpoints" / "last.pt").exists():
        raise ConfigError(f"{out} already holds a training run; remove it or train into another folder")
    cfg = load_config(recipe, sets=sets, overrides={"data": {"dataset": str(Path(dataset).resolve())}, "out": str(out)})
    return runner(fit_to_task(cfg, pinned=set_keys(sets)), out, resume=False, training_data=data)


def cross_validate_finetune(recipe: str, dataset, data, folds, keep: np.ndarray, work: Path, runner, *,
                            sets: list[str] | None = None, seed: int = 0) -> Candidate:
    """Out-of-fold predictions of ``recipe`` over train+validation of ``data`` (one run per fold, in
    ``work/fold-K``); a :class:`Candidate` scored like the probes, ``cpu_s`` the CPU seconds of all folds."""
    t0 = time.process_time()
    pool = pooled_split(data)
    y = pool.targets
    fixed = fixed_length_sets(recipe, [*(sets or []), f"seed={seed}"])
    oof = np.zeros((len(y), len(data.tags)), np.float32)
    per_fold = []
    for k, (tr, te) in enumerate(folds):
        out = Path(work) / f"fold-{k}"
        log.info("[finetune %s] fold %d/%d: %d training, %d held-out tracks", recipe, k + 1, len(folds), len(tr), len(te))
        train_on(recipe, dataset, with_splits(data, _subset(pool, tr, "train"), _subset(pool, te, "validation")),
                 out, fixed, runner)
        pred = np.load(out / "predictions" / "validation.npy")
        ids = (out / "predictions" / "validation_ids.txt").read_text(encoding="utf-8").split()
        if ids != [pool.ids[i] for i in te]:
            raise ConfigError(f"{out}: the held-out predictions are not in the fold's track order")
        oof[te] = pred
        per_fold.append(metric_on(pred, y[te], data.task, keep))
    cand = Candidate((f"finetune:{recipe}",), HEAD, [0.0])
    cand.oof, cand.pooled, cand.per_fold = [oof], [metric_on(oof, y, data.task, keep)], [per_fold]
    cand.cpu_s = time.process_time() - t0
    return cand


# ------------------------------------------------------------------------------------------ probe-auto's hook
def _checked(sel) -> tuple[str, list[str]]:
    """``select.finetune_recipe`` (a shipped recipe or TOML that trains a network) and ``select.finetune_sets``."""
    from musetag.training.recipes import load_config
    from musetag.training.probe import is_probe_model

    sets = sel.finetune_sets
    if not isinstance(sets, (list, tuple)) or not all(isinstance(s, str) and "=" in s for s in sets):
        raise ConfigError(f"select.finetune_sets = {sets!r}: give a list of \"key=value\" strings, e.g. [\"epochs=4\"]")
    recipe = str(sel.finetune_recipe)
    name = load_config(recipe, sets=list(sets)).model.name
    if name == "probe_auto" or is_probe_model(name):
        raise ConfigError(f"select.finetune_recipe = {recipe!r} fits a probe on embeddings, which probe-auto already "
                          "tries; name a fine-tuning recipe such as smalldata-finetune-musicnn")
    return recipe, list(sets)


def finetune_candidate(cfg, arrays, folds, keep: np.ndarray, cands: list[Candidate], run_dir: Path, runner):
    """``select.finetune``: cross-validate the fine-tune; train it into ``run_dir`` and return its
    :class:`~musetag.training.runstate.RunResult` when it beats every probe's CV score, else None."""
    sel = cfg.select
    recipe, sets = _checked(sel)
    dataset = cfg.data.dataset
    data = load_pool(recipe, dataset, sets, run_dir)
    if [data.splits[r].ids for r in ("train", "validation", "test")] != [arrays.ids[r] for r in ("train", "validation", "test")]:
        raise ConfigError(f"{dataset}: the fine-tune recipe {recipe!r} reads other tracks than the probes "
                          "(failed decodes?); run `musetag prepare` for both presets and check failures.csv")
    cand = cross_validate_finetune(recipe, dataset, data, folds, keep, Path(run_dir) / "finetune-cv", runner, sets=sets,
                                   seed=cfg.seed)
    best = max(cands, key=lambda c: np.nan_to_num(c.score, nan=-np.inf))
    log.info("[candidate %d] %-45s CV %.4f ± %.4f (%.1f s CPU); best probe %s CV %.4f", len(cands) + 1, cand.name,
             cand.score, cand.spread, cand.cpu_s, best.name, best.score)
    table = [c.row() for c in sorted([*cands, cand], key=lambda c: -np.nan_to_num(c.score, nan=-np.inf))]
    info = {"finetune": cand.row(), "best_probe": best.row(), "chosen": cand.score > best.score}
    (Path(run_dir) / "finetune-cv.json").write_text(json.dumps(info, indent=2, default=float), encoding="utf-8")
    if not cand.score > best.score:
        return None
    log.info("fine-tuning wins: %s is trained on train+validation into %s", recipe, run_dir)
    select = {"folds": len(folds), "grouped": arrays.groups is not None, "candidates": table, "chosen": [cand.name],
              "cpu_s": round(cand.cpu_s, 1)}
    return train_final(recipe, dataset, data, sets, cfg.seed, Path(run_dir), select, runner)


def train_final(recipe: str, dataset, data, sets: list[str], seed: int, run_dir: Path, select: dict, runner):
    """The fine-tune on train+validation of ``data`` into ``run_dir`` (whose lock the caller holds), the last
    epoch kept; validation and test predicted once at the end; ``select`` is added to its ``summary.json``."""
    ft_sets = fixed_length_sets(recipe, [*sets, f"seed={seed}"])
    final = with_splits(data, pooled_split(data), data.splits["validation"], data.splits["test"])
    result = train_on(recipe, dataset, final, Path(run_dir), ft_sets, runner)
    summary_path = Path(run_dir) / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    summary["select"] = {"metric": result.metric, **select,
                         "note": "validation figures are in-sample (the final fine-tune trained on train+validation); "
                                 "the CV figures are in candidates"}
    write_text_atomic(summary_path, json.dumps(summary, indent=2, default=float))
    return result
