"""`musetag compare`'s paired bootstrap (1000 resamples, PR-AUC-macro) on two of the shared Bour 2021
models' test predictions (4231 x 56): the count-based scoring (one sort per column, resamples as
counts) against the loop it replaced (score every materialised resample), both in this run, same seed.

Prints CPU seconds of each and ``ratio:`` old / new; writes bench/results/compare.md. Needs
../shared/data (skips without it).

    python bench/compare.py [--old-resamples 1000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DATA = Path(os.environ.get("MUSETAG_SHARED_DATA", REPO.parent / "shared" / "data"))
BOUR = DATA / "bour2021-predictions" / "test"
GT = DATA / "mtg-jamendo" / "mediaeval-results" / "groundtruth.npy"
A, B = "convs-m96-i128-bce", "filters-m128-i224-wbce"


def old_paired(gt, a, b, n_resamples, seed, metric):
    """The implementation before issue 19: materialise each resample and score it."""
    from musetag.evaluate.stats import METRICS, _resamples

    fn = METRICS[metric]
    diffs = np.empty(n_resamples)
    for i, idx in enumerate(_resamples(len(gt), n_resamples, seed)):
        y = gt[idx]
        both = fn(np.concatenate([y, y], axis=1), np.concatenate([a[idx], b[idx]], axis=1))
        diffs[i] = np.nanmean(both[: y.shape[1]]) - np.nanmean(both[y.shape[1]:])
    diffs = diffs[np.isfinite(diffs)]
    return {"low": float(np.quantile(diffs, 0.025)), "high": float(np.quantile(diffs, 0.975)),
            "p_value": float((np.sum(diffs <= 0) + 1) / (len(diffs) + 1))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--old-resamples", type=int, default=1000, help="fewer to shorten the old loop's run")
    args = ap.parse_args(argv)
    if not BOUR.exists() or not GT.exists():
        print(f"skipped: {BOUR} or {GT} not found")
        return 0
    from musetag.evaluate.stats import paired_bootstrap

    gt, a, b = np.load(GT).astype(bool), np.load(BOUR / f"{A}.npy"), np.load(BOUR / f"{B}.npy")
    rows = []
    for metric in ("PR-AUC-macro", "ROC-AUC-macro"):
        t0 = time.process_time()
        new = paired_bootstrap(gt, a, b, n_resamples=args.resamples, seed=0, metric=metric)
        t_new = time.process_time() - t0
        t0 = time.process_time()
        old = old_paired(gt, a.astype(np.float64), b.astype(np.float64), args.old_resamples, 0, metric)
        t_old = time.process_time() - t0
        t_old_scaled = t_old * args.resamples / args.old_resamples
        same = args.old_resamples == args.resamples and old["p_value"] == new["p_value"] and \
            abs(old["low"] - new["low"]) < 1e-12 and abs(old["high"] - new["high"]) < 1e-12
        rows.append((metric, t_old_scaled, t_new, new, same))
        print(f"{metric}: old {t_old_scaled:.1f} CPU s, new {t_new:.1f} CPU s; p {new['p_value']:.4f}, "
              f"CI [{new['low']:+.6f}, {new['high']:+.6f}], equal to the old loop: {same}")
        print(f"ratio: {metric} old / new = {t_old_scaled / t_new:.1f}")
    lines = ["| metric | old loop (CPU s) | count-based (CPU s) | old / new | p-value | 95% CI of A - B | same as old |",
             "|---|---|---|---|---|---|---|"]
    for metric, t_old, t_new, r, same in rows:
        lines.append(f"| {metric} | {t_old:.1f} | {t_new:.1f} | {t_old / t_new:.1f}x | {r['p_value']:.4f} | "
                     f"[{r['low']:+.6f}, {r['high']:+.6f}] | {'yes' if same else 'not compared'} |")
    scaled = "" if args.old_resamples == args.resamples else \
        f" (the old loop ran {args.old_resamples} resamples, scaled to {args.resamples})"
    text = ("## `musetag compare`: paired bootstrap\n\n"
            f"Reproduce with `python bench/compare.py`: A = {A}, B = {B} (shared Bour 2021 test predictions, "
            f"4231 x 56, official ground truth), {args.resamples} paired resamples, seed 0, CPU seconds on the "
            f"shared 2-core machine{scaled}. The old loop scored each materialised resample; the new scoring "
            "sorts each column once and scores every resample from cumulative sums of its draw counts (equal "
            "results: `tests/test_evaluate_stats.py` keeps the old loop as the reference).\n\n"
            + "\n".join(lines) + "\n")
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "compare.md").write_text(text, encoding="utf-8")
    print(f"wrote {REPO / 'bench' / 'results' / 'compare.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
