"""Multi-model ensembles (``[[members]]``): each member is a run of its own in
``RUN_DIR/members/<name>``; the ensemble's predictions are their weighted average."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from musetag.outputs import write_bytes_atomic, write_text_atomic
from musetag.training.config import TrainConfig
from musetag.errors import ConfigError, MusetagError
from musetag.training.recipes import dump_toml, load_config, load_toml_config
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
    from musetag.training.config import merge
    from musetag.training.recipes import read_recipe

    # every member's config first: a setting one member cannot take is refused before any member trains
    member_cfgs = []
    for member in cfg.members:
        member_dir = run_dir / "members" / member.name
        start = read_recipe(member.recipe) if member.recipe else base
        member_data = merge(merge(start, shared), _nested_sets(member.set))
        member_data["out"] = str(member_dir)
        try:
            member_cfgs.append(fit_to_task(load_config(member_data, sets=list(cfg.member_sets)),
                                           pinned=set_keys(cfg.member_sets)))
        except ConfigError as exc:
            raise ConfigError(f"ensemble member {member.name!r} ({member.recipe or 'the ensemble recipe'}): {exc}") from None
    for member, member_cfg in zip(cfg.members, member_cfgs):
        member_dir = run_dir / "members" / member.name
        changed = _changed_settings(member_dir, member_cfg) if (member_dir / "summary.json").exists() else []
        if changed:  # reusing it would average a member trained otherwise than the config says
            raise ConfigError(
                f"ensemble member {member.name!r} ({member_dir}) has finished training with other settings than "
                f"the ensemble's config now gives it ({', '.join(changed[:5])}); resume {run_dir} without the "
                "--set values that change them, or train the ensemble into a new --out folder")
    config_path = run_dir / "config.toml"
    before = config_path.read_bytes() if config_path.exists() else None
    if load_toml_config(config_path).to_dict() != cfg.to_dict():  # --resume ENSEMBLE --set ...
        dump_toml(cfg, config_path, header=f"resolved musetag ensemble config (recipe: "
                  f"{cfg.recipe or 'custom'}; changed with --set when resumed)")
    results, trained = [], False
    for member, member_cfg in zip(cfg.members, member_cfgs):
        member_dir = run_dir / "members" / member.name
        if (member_dir / "summary.json").exists():
            log.info("member %s already trained", member.name)
        elif (member_dir / "checkpoints" / "last.pt").exists():
            try:
                run_one(member_cfg, member_dir, resume=True, training_data=training_data)
            except ConfigError:  # the member refused the --set values before training: unless a member before it
                if before is not None and not trained:  # trained with them, the ensemble's config stays as it was
                    write_bytes_atomic(config_path, before)
                raise
            trained = True
        else:
            run_one(member_cfg, member_dir, resume=False, training_data=training_data)
            trained = True
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
    # the column names of the matrices (`musetag score` and reports read them), as a single run writes them
    member_tags = run_dir / "members" / cfg.members[0].name / "predictions" / "tags.txt"
    if member_tags.is_file():
        (run_dir / "predictions" / "tags.txt").write_text(member_tags.read_text(encoding="utf-8"), encoding="utf-8")
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
    if results[0].get("tags"):
        summary["tags"] = list(results[0]["tags"])
    write_text_atomic(run_dir / "summary.json", json.dumps(jsonable(summary), indent=2))
    log.info("ensemble of %d: validation %s %.4f", len(cfg.members), metric, scores["validation"].get(metric, float("nan")))
    return RunResult(run_dir, "ensemble", metric, 0, scores["validation"], scores["test"],
                     sum(r.get("epochs_run", 0) for r in results))


def _changed_settings(member_dir: Path, member_cfg: TrainConfig) -> list[str]:
    """The settings (``key: there -> now``) in which the member trained in ``member_dir`` differs from ``member_cfg``."""
    try:
        theirs = load_toml_config(member_dir / "config.toml").to_dict()
    except MusetagError:
        return []  # no readable config.toml: nothing to compare (a folder from before config.toml was written)
    ours = member_cfg.to_dict()

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "args" else {f"{prefix}{k}": v})
        return out

    a, b = flat(theirs), flat(ours)
    return [f"{k}: {a.get(k)!r} there, {b.get(k)!r} now" for k in sorted(set(a) | set(b))
            if k not in _NOT_WEIGHTS and a.get(k) != b.get(k)]


#: settings that change neither a member's weights nor its predictions: where it runs and how fast it evaluates
_NOT_WEIGHTS = ("out", "progress", "device", "amp", "compile", "data.num_workers", "data.cache_dir", "member_sets",
                "data.eval_batch_size", "data.eval_cache_mb")


def _nested_sets(sets: dict) -> dict:
    """``{"model.name": "x", "optim": {"lr": 1}}`` -> nested dict (dotted keys allowed)."""
    from musetag.training.config import _nest, merge

    out: dict = {}
    for key, value in sets.items():
        out = merge(out, _nest(key, value) if "." in key else {key: value})
    return out
