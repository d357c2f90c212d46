"""Multi-model ensembles (``[[members]]``): each member is a run of its own in
``RUN_DIR/members/<name>``; the ensemble's predictions are their weighted average."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from musetag.outputs import write_text_atomic
from musetag.training.config import TrainConfig
from musetag.training.recipes import dump_toml, load_config
from musetag.training.recipe_checks import fit_to_task, set_keys
from musetag.training.runstate import RunResult, jsonable
from musetag.training.scoring import loss_value, score

log = logging.getLogger("musetag.train")


def run_members(cfg: TrainConfig, run_dir: Path, run_one: Callable[..., RunResult], *, training_data=None) -> RunResult:
    """Train every member (``RUN_DIR/members/<name>``, each with ``run_one(cfg, dir, resume=...)``) and
    average their predictions (weighted)."""
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
        from musetag.training.config import merge
        from musetag.training.recipes import read_recipe

        start = read_recipe(member.recipe) if member.recipe else base
        member_data = merge(merge(start, shared), _nested_sets(member.set))
        member_data["out"] = str(member_dir)
        member_cfg = fit_to_task(load_config(member_data, sets=list(cfg.member_sets)),
                                 pinned=set_keys(cfg.member_sets))
        if (member_dir / "summary.json").exists():
            log.info("member %s already trained", member.name)
        elif (member_dir / "checkpoints" / "last.pt").exists():
            run_one(member_cfg, member_dir, resume=True, training_data=training_data)
        else:
            run_one(member_cfg, member_dir, resume=False, training_data=training_data)
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
    write_text_atomic(run_dir / "summary.json", json.dumps(jsonable(summary), indent=2))
    log.info("ensemble of %d: validation %s %.4f", len(cfg.members), metric, scores["validation"].get(metric, float("nan")))
    return RunResult(run_dir, "ensemble", metric, 0, scores["validation"], scores["test"],
                     sum(r.get("epochs_run", 0) for r in results))


def _nested_sets(sets: dict) -> dict:
    """``{"model.name": "x", "optim": {"lr": 1}}`` -> nested dict (dotted keys allowed)."""
    from musetag.training.config import _nest, merge

    out: dict = {}
    for key, value in sets.items():
        out = merge(out, _nest(key, value) if "." in key else {key: value})
    return out
