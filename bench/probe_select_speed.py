"""Speed of ``musetag train probe-auto``'s choice (embedding excluded) at the issue's size.

Synthetic embeddings standing in for cached ones: 1,000 tracks (800 train, 200 validation; groups of
4 tracks, like artists), 120 multilabel tags with prevalences from 2 % to 30 %, eight blocks with the
widths of the eight default catalogue backbones' ``embed:NAME`` vectors (256, 256, 328, 192, 256,
328, 256, 192: the means of their last three layers), each a noisy
linear view of 24 shared latent factors that also decide the tags. The default candidate set runs:
every block with the linear and the MLP head, then the pairs of the 3 best blocks, 5 grouped folds,
nested CV over the out-of-fold predictions, the refit. Pairs are not filtered by front end here
(``packable`` needs real packages).

The peer, measured in the same run: one ``probe-linear`` fit as ``musetag train`` does it (the C
grid fitted on the training split, chosen on validation) on one block, on one torch thread like each
of probe-auto's fits (with torch's default threads its CPU seconds swing several-fold on a busy machine:
OpenMP threads spin while they wait). CPU seconds are this
process's (``time.process_time``, all threads); the load average before and after is recorded, since
the machine may be shared. The target: under 5 minutes (300 s) on 2 cores.

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

#: the widths of ``embed:NAME``'s default vectors (``NAME@layers=-3,-2,-1``: the means of the last three layers,
#: concatenated), read from the vector layouts (``musetag.data.embed_features.cache_layout``) of the Emotify
#: caches of the eight catalogue backbones filled from /work/cache-layers/store, e.g. jamendo-fcn: layer4 128 +
#: layer5 64 + features 64; jamendo-musicnn: layer2 64 + layer3 64 + features 200; jamendo-crnn: 128 + 32 + 32
WIDTHS = {"mtg-jamendo-baseline": 256, "jamendo-fcn": 256, "jamendo-musicnn": 328, "jamendo-crnn": 192,
          "mtat-fcn": 256, "mtat-musicnn": 328, "msd-fcn": 256, "msd-crnn": 192}


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
    import torch

    from musetag.training.config import SelectSection
    from musetag.training.probe import select
    from musetag.training.probe_auto import _choose, _final_model, search
    from musetag.training.probe_cv import cores, make_folds, rare_outputs

    arrays = synthetic(args.tracks, args.tags)
    sel = SelectSection(backbones=list(WIDTHS), packable=False)
    cfg = SimpleNamespace(select=sel, seed=0)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # with several, its CPU seconds swung from 27 to 170 between two runs on a busy machine
    c0, w0 = time.process_time(), time.time()
    x_tr, x_va = arrays.blocks["jamendo-musicnn"]["train"], arrays.blocks["jamendo-musicnn"]["validation"]
    select("probe_linear", {}, "multilabel", args.tags, x_tr, arrays.y["train"], x_va, arrays.y["validation"],
           grid=[0.001, 0.01, 0.1, 1.0, 10.0, 100.0], max_iter=500)
    peer_cpu, peer_wall = time.process_time() - c0, time.time() - w0
    torch.set_num_threads(threads)

    load_before = os.getloadavg()
    c0, w0 = time.process_time(), time.time()
    y = np.concatenate([arrays.y["train"], arrays.y["validation"]])
    folds = make_folds("multilabel", y, arrays.groups, sel.folds, 0)
    keep = ~rare_outputs("multilabel", y, sel.folds)
    cands = search(cfg, arrays, list(WIDTHS), folds, keep)
    grown = [(c, len(sel.grid if c.head == "linear" else sel.mlp_grid)) for c in cands]
    grown = [(c, n) for c, n in grown if len(c.grid) > n]
    w1 = time.time()
    singles = [c.cpu_s for c in cands if len(c.blocks) == 1]
    pairs = [c.cpu_s for c in cands if len(c.blocks) == 2]
    chosen, info = _choose(cands, arrays, folds, keep, sel.average)
    w2 = time.time()
    _final_model(arrays, chosen, cfg)
    w3 = time.time()
    cpu, wall = time.process_time() - c0, w3 - w0
    load_after = os.getloadavg()
    load = ", ".join(f"{v:.1f}" for v in load_before) + " before; " + ", ".join(f"{v:.1f}" for v in load_after) + " after"

    lines = [
        "## probe-auto: the choice over cached embeddings (`bench/probe_select_speed.py`)",
        "",
        f"Synthetic embeddings: {args.tracks} tracks x {args.tags} tags, 8 blocks with the widths of the default"
        f" `embed:NAME` vectors of the 8 catalogue backbones (the means of their last three layers: {', '.join(map(str, WIDTHS.values()))});"
        f" the default candidate set ({len(cands)} candidates: 8 backbones x linear/MLP, then the pairs of the 3 best),"
        f" {sel.folds} grouped folds, C grids {sel.grid} (linear) / {sel.mlp_grid} (MLP), nested CV, refit."
        f" {platform.machine()}, {cores()} cores ({cores()} candidates fitted side by side, one torch thread each),"
        f" shared with other jobs; load average (1, 5, 15 min): {load}.",
        "",
        "| what | CPU s | wall s |",
        "|---|---:|---:|",
        f"| probe-auto choice (default candidates): cross-validation {w1 - w0:.0f} s, nested CV {w2 - w1:.1f} s,"
        f" refit {w3 - w2:.0f} s wall | {cpu:.1f} | {wall:.1f} |",
        f"| peer: one probe-linear fit (6 C on the train split, jamendo-musicnn-sized block, one torch thread) | {peer_cpu:.1f} | {peer_wall:.1f} |",
        "",
        f"Ratio probe-auto / one probe-linear fit: {cpu / peer_cpu:.1f}x CPU. Target: under 300 s on 2 cores:"
        f" {'met' if wall < 300 else 'NOT met'} here ({wall:.0f} s wall).",
        f"Chosen: {', '.join(c.name for c in chosen)} (nested CV, top-m sizes {info['m']}: "
        + ", ".join(f"{v:.3f}" for v in info["score"]) + ").",
        f"Where the CPU went: the candidates' fits {sum(c.cpu_s for c in cands):.0f} s (each on its own thread:"
        f" {np.mean(singles):.1f} s a single backbone, {np.mean(pairs) if pairs else float('nan'):.1f} s a pair,"
        " linear and MLP heads alike), the rest scoring, nested CV and the refit. This run had"
        f" {cpu / wall:.2f} of the {cores()} cores on average; with both to itself the same CPU seconds would take"
        f" about {cpu / cores():.0f} s wall (CPU s / cores: an estimate, not a measurement).",
        "",
        "How: each stage's candidates are fitted side by side on one thread per core, torch held to one"
        " intra-op thread (threads that split a sum differently would move an L-BFGS stopped at max_iter in the"
        " third decimal, so the table is the same, bit for bit, whatever the core count); inside the choice a"
        " multilabel candidate is scored by PR-AUC-macro alone (vectorised average precision, not the whole"
        " `score()` table with ROC-AUC and micro figures: about 1 ms a call instead of 15 ms at this size,"
        " measured with cProfile); the top m are refitted side by side. A candidate whose best C is an edge of its"
        f" grid gets up to select.extend = {sel.extend} more values past that edge: here {len(grown)} of {len(cands)}"
        f" candidates did ({sum(len(c.grid) - n for c, n in grown)} extra C values, each one batched fit over the"
        " folds).",
        "",
    ]
    args.report.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"ratio: probe-auto / probe-linear CPU {cpu / peer_cpu:.1f}x")


if __name__ == "__main__":
    main()
