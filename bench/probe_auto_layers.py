"""Which vectors should probe-auto's candidates be made of? Its whole choice, per layer rule (issue 25).

``bench/embed_layers.py`` compared layer rules backbone by backbone with one head. This script runs what
``musetag train probe-auto`` runs (every catalogue backbone alone with linear and MLP heads, then the pairs of
the three best, C grids extended past a winning edge) once per rule applied to every backbone, and reports the
nested cross-validation figures the command itself chooses by: per outer fold, the candidates are ranked on
the other folds and the best one / the mean of the top m is scored on the held-out fold. The figure to
compare is the best of those (what the command would pick), with the CPU it cost. Emotify's train+validation
only (314 clips, 5 folds grouped by artist); the test split is never read. Several seeds (``--set seed=N`` of
the command: its folds and its MLPs' initial weights), since one draw of 5 folds moves these figures by about 0.01.

Rules: ``default`` (``embed:NAME``, the mean of the last three taps), ``@layers=all`` (every tap; mean, std,
max), ``@layers=all,pool=mean`` (the mean of every tap), ``:scores`` (the pooled penultimate layer followed
by the backbone's own tag scores). The vectors are assembled from the array store (``--store``, filled by
``musetag prepare`` of the backbones' ``embed:NAME`` and ``embed:NAME:scores`` presets); a missing
backbone is computed, which takes long.

Usage: python bench/probe_auto_layers.py --store DIR --work DIR [--rules default,...] [--seeds 0,1]
       [--regression-rules default,...] [--report bench/results/probe-auto-layers.md]
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(BENCH))

RULES = {"default": "", "all": "@layers=all", "all-mean": "@layers=all,pool=mean", "scores": ":scores"}
LABELS = {"default": "`embed:NAME` (the mean of the last three taps; the default)",
          "all": "`NAME@layers=all` (every tap: mean, std, max)",
          "all-mean": "`NAME@layers=all,pool=mean` (the mean of every tap)",
          "scores": "`NAME:scores` (penultimate mean, then the backbone's tag scores)"}
SIZES = (1, 2, 3, 5, 8)


def run_rule(task: str, rule: str, seed: int, work: Path) -> dict:
    """probe-auto's search and nested CV for one rule and fold seed: the figures and their cost."""
    import moods
    from musetag.training import probe_auto as pa
    from musetag.training.probe_cv import make_folds, nested, rare_outputs
    from musetag.training.recipes import load_config

    toml = moods.dataset_toml(work, task, "embed:jamendo-fcn")
    cfg = load_config("probe-auto", sets=[f'data.dataset="{toml}"', f"seed={seed}"])
    names = [b + RULES[rule] for b in pa.default_backbones()]
    arrays = pa.load_arrays(cfg, work / f"run-{task}", names)
    y = np.concatenate([arrays.y["train"], arrays.y["validation"]])
    keep = ~rare_outputs(task, y, int(cfg.select.folds)) if task == "multilabel" else np.ones(y.shape[1], bool)
    wall, cpu = time.time(), time.process_time()
    folds = make_folds(task, y, arrays.groups, int(cfg.select.folds), cfg.seed)  # as the command makes them
    cands = pa.search(cfg, arrays, names, folds, keep)
    ranked = sorted(cands, key=lambda c: -np.nan_to_num(c.score, nan=-np.inf))
    info = nested(ranked, y, task, folds, keep, sizes=SIZES)
    return {"task": task, "rule": rule, "seed": seed, "nested": info["score"], "best": max(info["score"]),
            "top": [c.name.replace(RULES[rule], "") for c in ranked[:3]],
            "width": int(np.mean([arrays.blocks[n]["train"].shape[1] for n in names])),
            "wall": time.time() - wall, "cpu": time.process_time() - cpu}


def render(rows: list[dict], args, load: tuple[float, float, float]) -> str:
    lines = ["## probe-auto's choice per layer rule (`bench/probe_auto_layers.py`)", "",
             "Emotify train+validation only (314 clips; the test split is never read), `musetag train probe-auto`'s own search "
             "(8 catalogue backbones x linear/MLP, then the pairs of the 3 best; C grids extended past a winning edge; "
             "5 folds grouped by artist) with every backbone's vector made by one rule. Cells: nested CV (per outer fold the "
             "candidates are ranked on the other folds; the best one / the mean of the top m scored on the held-out fold): "
             "PR-AUC-macro (multilabel) or mean R² (regression, the nine agreement fractions); `chosen`: the best of them, "
             "what the command picks. CPU: seconds of this process for the search (both cores fit candidates side by "
             f"side). {platform.machine()}, 2 cores; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
             "", "| task | rule | seed | mean width | top 1 | top 2 | top 3 | top 5 | top 8 | **chosen** | CPU s | wall s | best candidates |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cells = " | ".join(f"{v:.4f}" for v in r["nested"])
        lines.append(f"| {r['task']} | {LABELS[r['rule']]} | {r['seed']} | {r['width']} | {cells} | **{r['best']:.4f}** | "
                     f"{r['cpu']:.0f} | {r['wall']:.0f} | {', '.join(r['top'])} |")
    lines += ["", "Chosen figure, rule minus default, per task and fold seed:", ""]
    base = {(r["task"], r["seed"]): r["best"] for r in rows if r["rule"] == "default"}
    for r in rows:
        if r["rule"] != "default" and (r["task"], r["seed"]) in base:
            lines.append(f"- {r['task']}, seed {r['seed']}, {r['rule']}: {r['best'] - base[(r['task'], r['seed'])]:+.4f}")
    lines += ["", f"Command: `python bench/probe_auto_layers.py {' '.join(args.argv)}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, help="array store holding the backbones' stats and scores arrays")
    ap.add_argument("--work", type=Path, help="folder for the dataset TOMLs and caches")
    ap.add_argument("--rules", default="default,all,all-mean,scores")
    ap.add_argument("--regression-rules", default="default,all-mean,scores")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--regression-seeds", default="0")
    ap.add_argument("--report", type=Path, default=BENCH / "results" / "probe-auto-layers.md")
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.store is None or args.work is None:
        print("probe_auto_layers: reads embeddings prepared beforehand (about 30 CPU minutes of fits); "
              "bench/results/probe-auto-layers.md keeps the recorded run. Run it with: python bench/probe_auto_layers.py "
              "--store DIR --work DIR (see the module docstring)")
        return 0
    import moods

    moods.STORE = args.store.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    plan = [("multilabel", r, int(s)) for r in args.rules.split(",") for s in args.seeds.split(",")]
    plan += [("regression", r, int(s)) for r in args.regression_rules.split(",") if r
             for s in args.regression_seeds.split(",")]
    for task, rule, seed in plan:
        if rule not in RULES:
            raise SystemExit(f"unknown rule {rule!r}: choose among {', '.join(RULES)}")
        row = run_rule(task, rule, seed, args.work)
        rows.append(row)
        print(f"{task} {rule} seed {seed}: nested {[round(v, 4) for v in row['nested']]} chosen {row['best']:.4f} "
              f"({row['cpu']:.0f} CPU s, {row['wall']:.0f} s wall)", flush=True)
    args.report.write_text(render(rows, args, os.getloadavg()))
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
