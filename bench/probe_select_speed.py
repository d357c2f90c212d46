"""Speed of ``musetag train probe-auto``'s choice (embedding excluded) at the issue's size.

Synthetic embeddings standing in for cached ones: 1,000 tracks (800 train, 200 validation; groups of
4 tracks, like artists), 120 multilabel tags with prevalences from 2 % to 30 %, eight blocks with the
widths of the eight default catalogue backbones (64, 64, 200, 32, 64, 200, 64, 32), each a noisy
linear view of 24 shared latent factors that also decide the tags. The default candidate set runs:
every block with the linear and the MLP head, then the pairs of the 3 best blocks, 5 grouped folds,
nested CV over the out-of-fold predictions, the refit. Pairs are not filtered by front end here
(``packable`` needs real packages).

The peer, measured in the same run: one ``probe-linear`` fit as ``musetag train`` does it (the C
grid fitted on the training split, chosen on validation) on one block. CPU seconds are this
process's (``time.process_time``, all threads). The target: under 5 minutes (300 s) on 2 cores.

Usage: python bench/probe_select_speed.py [--tracks 1000] [--tags 120]; writes bench/results/probe-select-speed.md.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))

WIDTHS = {"mtg-jamendo-baseline": 64, "jamendo-fcn": 64, "jamendo-musicnn": 200, "jamendo-crnn": 32,
          "mtat-fcn": 64, "mtat-musicnn": 200, "msd-fcn": 64, "msd-crnn": 32}


def synthetic(n: int, n_tags: int, seed: int = 0):
    from musetag.training.probe_auto import Arrays

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 24))
    logits = z @ rng.standard_normal((24, n_tags)) / np.sqrt(24) * 2.0
    prevalence = np.linspace(0.02, 0.30, n_tags)
    cut = np.array([np.quantile(logits[:, j], 1 - prevalence[j]) for j in range(n_tags)])
    y = (logits > cut).astype(np.float32)
    n_tr = int(0.8 * n)
    blocks = {}
    for i, (name, w) in enumerate(WIDTHS.items()):
        noise = 0.5 + 0.25 * i
        x = (z @ rng.standard_normal((24, w)) + noise * rng.standard_normal((n, w))).astype(np.float32)
        blocks[name] = {"train": x[:n_tr], "validation": x[n_tr:], "test": x[:0]}
    groups = [f"artist{i // 4}" for i in range(n)]
    return Arrays("multilabel", [f"tag{i}" for i in range(n_tags)],
                  {"train": [str(i) for i in range(n_tr)], "validation": [str(i) for i in range(n_tr, n)], "test": []},
                  {"train": y[:n_tr], "validation": y[n_tr:], "test": y[:0]}, groups, blocks, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=1000)
    ap.add_argument("--tags", type=int, default=120)
    ap.add_argument("--report", type=Path, default=BENCH / "results" / "probe-select-speed.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from musetag.training.config import SelectSection
    from musetag.training.probe import select
    from musetag.training.probe_auto import _choose, _final_model, search
    from musetag.training.probe_cv import make_folds, rare_outputs

    arrays = synthetic(args.tracks, args.tags)
    sel = SelectSection(backbones=list(WIDTHS), packable=False)
    cfg = SimpleNamespace(select=sel, seed=0)

    c0, w0 = time.process_time(), time.time()
    x_tr, x_va = arrays.blocks["jamendo-musicnn"]["train"], arrays.blocks["jamendo-musicnn"]["validation"]
    select("probe_linear", {}, "multilabel", args.tags, x_tr, arrays.y["train"], x_va, arrays.y["validation"],
           grid=[0.001, 0.01, 0.1, 1.0, 10.0, 100.0], max_iter=500)
    peer_cpu, peer_wall = time.process_time() - c0, time.time() - w0

    c0, w0 = time.process_time(), time.time()
    y = np.concatenate([arrays.y["train"], arrays.y["validation"]])
    folds = make_folds("multilabel", y, arrays.groups, sel.folds, 0)
    keep = ~rare_outputs("multilabel", y, sel.folds)
    cands = search(cfg, arrays, list(WIDTHS), folds, keep)
    chosen, info = _choose(cands, arrays, folds, keep, sel.average)
    _final_model(arrays, chosen, cfg)
    cpu, wall = time.process_time() - c0, time.time() - w0

    lines = [
        "## probe-auto: the choice over cached embeddings (`bench/probe_select_speed.py`)",
        "",
        f"Synthetic embeddings: {args.tracks} tracks x {args.tags} tags, 8 blocks with the default backbones' widths;"
        f" the default candidate set ({len(cands)} candidates: 8 backbones x linear/MLP, then the pairs of the 3 best),"
        f" {sel.folds} grouped folds, C grids {sel.grid} (linear) / {sel.mlp_grid} (MLP), nested CV, refit."
        f" {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load varies: wall times are noisy).",
        "",
        "| what | CPU s | wall s |",
        "|---|---:|---:|",
        f"| probe-auto choice (default candidates) | {cpu:.1f} | {wall:.1f} |",
        f"| peer: one probe-linear fit (6 C on the train split, jamendo-musicnn-sized block) | {peer_cpu:.1f} | {peer_wall:.1f} |",
        "",
        f"Ratio probe-auto / one probe-linear fit: {cpu / peer_cpu:.1f}x CPU. Target: under 300 s on 2 cores:"
        f" {'met' if wall < 300 else 'NOT met'} here ({wall:.0f} s wall).",
        f"Chosen: {', '.join(c.name for c in chosen)} (nested CV, top-m sizes {info['m']}: "
        + ", ".join(f"{v:.3f}" for v in info["score"]) + ").",
        "",
    ]
    args.report.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"ratio: probe-auto / probe-linear CPU {cpu / peer_cpu:.1f}x")


if __name__ == "__main__":
    main()
