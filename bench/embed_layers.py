"""Which layers and statistics make the best track embedding of each backbone (issue 25, item 1)?

Measured on Emotify's train+validation only (314 clips; the test split is never read): 5-fold
cross-validation grouped by the manifest's ``group`` column (artist), the folds, standardisation,
heads and C grids of ``musetag train probe-auto`` (:mod:`musetag.training.probe_cv`). Candidates are
written relative to each backbone's taps (:mod:`musetag.models.taps`: ``-1`` is ``features``, the
pooled penultimate layer; ``-2`` the layer before it...), so one rule can be the default of every
``embed:NAME``. Scores: CV PR-AUC-macro (multilabel, emotions at >= 30 % agreement; linear head, ``--mlp``
also the MLP head) and CV mean R² (regression on the nine agreement fractions; ridge).

Reads each backbone's stats arrays (every tap: mean, std, max over all frames of all windows,
``windows=fit``) from the array store (``--store``), where ``musetag prepare`` of a dataset with
``preset = "embed:NAME@layers=all"`` puts them; a backbone with missing files is reported and skipped.

Usage: python bench/embed_layers.py --store DIR [--backbones a,b] [--cells cells.json] [--report bench/results/embed_layers.md]
"""
from __future__ import annotations

import argparse
import csv
import json
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
DATA = ROOT.parent / "shared" / "data" / "emotify"
EMOTIONS = ("amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power", "joyful_activation", "tension",
            "sadness")
#: (label, layers relative to the taps, statistics); "all": every tap
CHOICES = [
    ("-1 mean (penultimate mean, before)", ["-1"], ["mean"]),
    ("-1 mean,std", ["-1"], ["mean", "std"]),
    ("-2 mean", ["-2"], ["mean"]),
    ("-2 mean,std", ["-2"], ["mean", "std"]),
    ("-2,-1 mean", ["-2", "-1"], ["mean"]),
    ("-3,-2,-1 mean", ["-3", "-2", "-1"], ["mean"]),
    ("-2,-1 mean,std", ["-2", "-1"], ["mean", "std"]),
    ("-2,-1 mean,std,max", ["-2", "-1"], ["mean", "std", "max"]),
    ("-3,-2,-1 mean,std", ["-3", "-2", "-1"], ["mean", "std"]),
    ("all mean", "all", ["mean"]),
    ("all mean,std", "all", ["mean", "std"]),
]


def stats_matrix(store: Path, backbone: str, rows: list[dict]) -> tuple[np.ndarray, list[dict]] | None:
    """Every clip's stats array of ``backbone`` (rows in manifest order) and its layout, or None if any is missing."""
    from musetag.data.embed_features import LAYOUT, _read_layout, embedding_feature_config, part_arrays_dir, stats_part
    from musetag.data.store import audio_key

    fc = embedding_feature_config(f"{backbone}@layers=all")
    folder = part_arrays_dir(store, fc.replace(mean=None, std=None).to_dict(), stats_part(fc.embed))
    paths = [folder / audio_key(DATA / r["path"]) for r in rows]
    if not (folder / LAYOUT).is_file() or not all(p.is_file() for p in paths):
        return None
    return np.stack([np.load(p).reshape(-1) for p in paths]), _read_layout(folder / LAYOUT)


def choose(x: np.ndarray, layout: list[dict], layers, pool) -> np.ndarray:
    from musetag.models.taps import resolve_layers, select

    names = list(dict.fromkeys(r["layer"] for r in layout))
    chosen = names if layers == "all" else resolve_layers(layers, names)
    return np.stack([select(v, layout, chosen, pool) for v in x])


def cv_score(x, y, task, head, folds, keep, grid) -> tuple[float, float, float]:
    from musetag.training.probe_cv import Candidate, cross_validate

    cand = cross_validate(Candidate(("x",), head, list(grid)), task, y.shape[1], x, y, [x.shape[1]], folds, keep,
                          seed=0, hidden=128, max_iter=150)
    return cand.score, cand.spread, cand.cpu_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path)
    ap.add_argument("--backbones", default="mtg-jamendo-baseline,jamendo-musicnn,jamendo-crnn,jamendo-fcn,mtat-musicnn,"
                                           "msd-crnn,mtat-fcn,msd-fcn")
    ap.add_argument("--report", type=Path, default=BENCH / "results" / "embed_layers.md")
    ap.add_argument("--mlp", action="store_true", help="also the MLP head (CPU-heavier)")
    ap.add_argument("--cells", type=Path, help="JSON file of measured cells per backbone: read (a backbone already "
                    "there is not measured again) and written, so backbones can be measured in separate runs")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.store is None:
        print("embed_layers: reads stats arrays prepared beforehand; bench/results/embed_layers.md keeps the recorded "
              "run. Run it with: python bench/embed_layers.py --store DIR (see the module docstring)")
        return
    from musetag.training.probe_cv import make_folds, rare_outputs

    with open(DATA / "emotify.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] in ("train", "validation")]  # never the test split
    tags = sorted({t for r in rows for t in r["tags"].split(";") if t})
    y_ml = np.array([[t in r["tags"].split(";") for t in tags] for r in rows], dtype=np.float32)
    y_rg = np.array([[float(r[e]) for e in EMOTIONS] for r in rows], dtype=np.float32)
    groups = [r["group"] for r in rows]
    folds = {"multilabel": make_folds("multilabel", y_ml, groups, 5, 0), "regression": make_folds("regression", y_rg, groups, 5, 0)}
    keep = {"multilabel": ~rare_outputs("multilabel", y_ml, 5), "regression": np.ones(len(EMOTIONS), bool)}
    measures = [("multilabel", "linear", y_ml, [0.01, 0.1, 1.0, 10.0]), ("regression", "linear", y_rg, [0.01, 0.1, 1.0, 10.0])]
    if args.mlp:
        measures.append(("multilabel", "mlp", y_ml, [1.0, 10.0]))
    table: dict[tuple[str, str], list] = {}
    done, notes = [], []
    saved = json.loads(args.cells.read_text()) if args.cells and args.cells.is_file() else {}
    key = "|".join(f"{t} {h}" for t, h, _, _ in measures)
    cpu = 0.0
    for b in [b for b in args.backbones.split(",") if b]:
        if key in saved.get(b, {}):  # measured by an earlier run with --cells (the same choices and measures)
            done.append(b)
            table.update({(b, label): cells for label, cells in saved[b][key]["table"].items()})
            cpu += saved[b][key]["cpu_s"]
            continue
        t0 = time.process_time()
        got = stats_matrix(args.store, b, rows)
        if got is None:
            notes.append(f"- `{b}`: stats arrays not (all) in the store; not measured.")
            continue
        done.append(b)
        x_all, layout = got
        for label, layers, pool in CHOICES:
            x = choose(x_all, layout, layers, pool)
            cells = [cv_score(x, y, task, head, folds[task], keep[task], grid) + (x.shape[1],)
                     for task, head, y, grid in measures]
            table[(b, label)] = cells
            print(f"{b:22s} {label:36s} " + "  ".join(f"{c[0]:.4f}±{c[1]:.3f}" for c in cells) + f"  {cells[0][3]}-d",
                  flush=True)
        cpu += time.process_time() - t0
        if args.cells:
            saved.setdefault(b, {})[key] = {"cpu_s": time.process_time() - t0,
                                            "table": {label: table[(b, label)] for label, _, _ in CHOICES}}
            args.cells.write_text(json.dumps(saved, indent=1))
    write_report(args.report, done, table, measures, notes, cpu)


def write_report(path: Path, done, table, measures, notes, cpu) -> None:
    heads = [f"{t} {h}" for t, h, _, _ in measures]
    lines = ["## Which layers make the embedding (`bench/embed_layers.py`)", "",
             "Emotify train+validation only (314 clips; the test split is never read), 5 folds grouped by artist, "
             "probe-auto's folds, standardisation, heads and C grids. Cells: CV score ± spread over folds "
             "(multilabel: PR-AUC-macro; regression on the nine agreement fractions: mean R²). Layers relative to each "
             "backbone's taps (`-1` = `features`, the pooled penultimate layer; `-2` the layer before). Statistics over "
             f"all frames of all windows (`windows=fit`). {platform.machine()}, {os.cpu_count()} shared cores (load average "
             f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} at the end, 1/5/15 min); {cpu:.0f} CPU s for the fits "
             "in all. `above`: on how many backbones the choice beat the penultimate mean; `wins`: on how many it was the "
             "best choice.",
             "", f"Backbones measured: {', '.join(f'`{b}`' for b in done)}.", ""]
    for i, name in enumerate(heads):
        lines += [f"### {name}", "", "| choice | " + " | ".join(done) + " | mean gain over `-1 mean` | above `-1 mean` | wins |",
                  "|---|" + "---:|" * (len(done) + 3)]
        base = {b: table[(b, CHOICES[0][0])][i][0] for b in done}
        best = {b: max(table[(b, c[0])][i][0] for c in CHOICES) for b in done}
        for label, _, _ in CHOICES:
            vals = [table[(b, label)][i] for b in done]
            gain = np.mean([v[0] - base[b] for v, b in zip(vals, done)])
            wins = sum(v[0] == best[b] for v, b in zip(vals, done))
            above = sum(v[0] > base[b] for v, b in zip(vals, done))
            lines.append(f"| {label} | " + " | ".join(f"{v[0]:.3f} ± {v[1]:.3f}" for v in vals)
                         + f" | {gain:+.4f} | {above} of {len(done)} | {wins} |")
        lines.append("")
    lines += [*notes, ""]
    path.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
