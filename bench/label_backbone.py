"""Which catalogue backbone labels moods best: the default of ``musetag label --backbone``.

Issue 28 asks the labelling page to default to "the best measured backbone for moods". The measure: on
Emotify's train + validation split (314 clips; the test split is never read), each catalogue backbone's
cached track embedding (penultimate-layer mean, ``windows=fit``: what the page embeds) gets a linear
probe (logistic regression per mood, ``C`` from a grid) scored by 5-fold cross-validation grouped by
artist (the set's ``group`` column), with the machinery of ``musetag train probe-auto``
(:func:`musetag.training.probe_cv.make_folds` and :func:`~musetag.training.probe_cv.cross_validate`):
PR-AUC-macro of the pooled out-of-fold predictions at the best ``C``. Repeated over 3 fold seeds; the
table gives the mean over seeds and the per-fold spread. The 9 moods are Emotify's GEMS labels at
>= 30 % listener agreement.

Embeddings come from an embedding store (``--store``; the one ``musetag prepare`` and the labelling
page fill); nothing is computed: a backbone with missing tracks is an error.

Usage: python bench/label_backbone.py --store DIR [--seeds 3]
Writes bench/results/label-backbone.md.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
EMOTIFY = BENCH.parent.parent / "shared" / "data" / "emotify"
GRID = [0.01, 0.1, 1.0, 10.0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(Path(os.environ.get("MUSETAG_HOME", Path.home() / ".cache" / "musetag"))
                                           / "features"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(BENCH / "results" / "label-backbone.md"))
    args = ap.parse_args(argv)
    from labelling import EMOTIFY_TAGS, embeddings
    from musetag.training.probe_auto import default_backbones
    from musetag.training.probe_cv import Candidate, cross_validate, make_folds, rare_outputs

    with open(EMOTIFY / "emotify.csv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] in ("train", "validation")]
    paths = [r["path"].split("audio/", 1)[1] for r in rows]
    groups = [r["group"] for r in rows]
    Y = np.array([[t in r["tags"].split(";") for t in EMOTIFY_TAGS] for r in rows], dtype=np.float32)
    keep = ~rare_outputs("multilabel", Y, 5)
    found = []
    started = time.perf_counter()
    for name in default_backbones():
        X = embeddings(paths, EMOTIFY / "audio", name, Path(args.store), compute=False)
        scores, spreads = [], []
        for seed in range(args.seeds):
            folds = make_folds("multilabel", Y, groups, 5, seed)
            cand = cross_validate(Candidate((name,), "linear", list(GRID)), "multilabel", Y.shape[1], X, Y,
                                  [X.shape[1]], folds, keep, seed=seed, hidden=1, max_iter=150)
            scores.append(cand.score)
            spreads.append(cand.spread)
            best_c = cand.C
        found.append((name, X.shape[1], float(np.mean(scores)), float(np.std(scores)), float(np.mean(spreads)), best_c))
        print(f"{name}: CV PR-AUC-macro {np.mean(scores):.4f} (dim {X.shape[1]})", flush=True)
    found.sort(key=lambda r: -r[2])
    lines = ["## The default backbone of `musetag label` (`bench/label_backbone.py`)", "",
             f"Emotify train + validation ({len(rows)} clips, {int(keep.sum())} of 9 moods with >= 5 positives; the "
             f"test split is not read), linear probe, 5-fold CV grouped by artist, C in {GRID}, {args.seeds} fold "
             f"seeds; {time.perf_counter() - started:.0f} s, x86_64, 2 cores shared with other jobs.", "",
             "| backbone | dim | CV PR-AUC-macro (mean over seeds) | sd over seeds | per-fold spread | C (last seed) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {d} | {m:.4f} | {s:.4f} | {f:.4f} | {c:g} |" for n, d, m, s, f, c in found]
    gap, fold_sd = found[0][2] - found[1][2], min(found[0][4], found[1][4])
    lines += ["", f"best: {found[0][0]}", "",
              "`musetag label`'s `--backbone` default (`DEFAULT_BACKBONE` in `musetag.commands.label`) is the best row."]
    if gap < fold_sd:
        lines.append(f"The first two rows differ by {gap:.4f}, well inside the per-fold spread ({fold_sd:.4f}): on these "
                     f"{len(rows)} clips {found[0][0]} and {found[1][0]} label moods equally well; the default takes the "
                     "higher mean.")
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
