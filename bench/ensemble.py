"""Ensembles of the 24 shared Bour 2021 models: every method's validation and test PR-AUC-macro
next to the team's hand-picked submission (3-average: test PR-AUC-macro 0.150872).

Runs the real command (``musetag ensemble --method auto``, which fits and scores every method)
and writes bench/results/ensemble.md. Needs ../shared/data; prints `ratio:` = auto's test score /
the published 3-average's.

    .venv/bin/python bench/ensemble.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MUSETAG_SHARED_DATA", REPO.parent / "shared" / "data"))
BOUR = DATA / "bour2021-predictions"
PUBLISHED = 0.150872  # submitted/3-average/results.tsv


def _run(extra: list[str]) -> tuple[dict, float, str]:
    names = sorted(p.stem for p in (BOUR / "test").glob("*.npy"))
    out = Path(tempfile.mkdtemp(prefix="musetag-ensemble-"))
    venv = REPO / ".venv" / "bin" / "musetag"
    launcher = [str(venv)] if venv.exists() else [sys.executable, "-m", "musetag"]  # a worktree has no .venv
    cmd = [*launcher, "ensemble", "--method", "auto",
           "--validation", *[str(BOUR / "validation" / f"{n}.npy") for n in names],
           "--test", *[str(BOUR / "test" / f"{n}.npy") for n in names],
           "--validation-targets", str(BOUR / "validation" / "targets.npy"),
           "--test-targets", str(DATA / "mtg-jamendo" / "mediaeval-results" / "groundtruth.npy"),
           "--out", str(out), *extra]
    t0 = time.time()
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    seconds = time.time() - t0
    print(proc.stdout)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(proc.returncode)
    meta = json.loads((out / "ensemble.json").read_text())
    return meta, seconds, str(out / "test.npy")


def _table(meta: dict) -> list[str]:
    lines = ["| method | validation PR-AUC-macro (5-fold CV) | validation PR-AUC-macro (in-sample) | "
             "test PR-AUC-macro | test minus 3-average | test ROC-AUC-micro | test PR-AUC-micro |",
             "|---|---|---|---|---|---|---|"]
    for m, row in meta["candidates"].items():
        chosen = " **(auto's choice)**" if m == meta["method"] else ""
        micro = (f"{row['test_roc_auc_micro']:.6f} | {row['test_pr_auc_micro']:.6f}" if "test_roc_auc_micro" in row
                 else "- | -")
        lines.append(f"| {m}{chosen} | {row['cv']:.6f} | {row['validation']:.6f} | {row['test']:.6f} | "
                     f"{row['test'] - PUBLISHED:+.6f} | {micro} |")
    lines.append(f"| published 3-average (hand-picked: mean of the 6 convs-m96 and the 6 filters-m128 models) "
                 f"| - | - | {PUBLISHED:.6f} | 0 | - | - |")
    return lines


def main() -> int:
    if not BOUR.exists():
        print(f"skipped: {BOUR} not found")
        return 0
    import numpy as np

    from musetag.evaluate.stats import paired_bootstrap

    split = DATA / "mtg-jamendo" / "splits" / "split-0" / "autotagging_moodtheme-validation.tsv"
    meta, seconds, test_path = _run([])
    meta_g, seconds_g, _ = _run(["--groups", str(split)]) if split.exists() else (None, 0, None)
    gt = np.load(DATA / "mtg-jamendo" / "mediaeval-results" / "groundtruth.npy")
    cmp = paired_bootstrap(gt, np.load(test_path), np.load(BOUR / "submitted" / "3-average" / "predictions.npy"),
                           n_resamples=500, seed=0)
    auto_test = meta["test_score"]
    print(f"ratio: {auto_test / PUBLISHED:.4f} (auto test PR-AUC-macro {auto_test:.6f} / published 3-average {PUBLISHED})")
    d = "../shared/data"
    shown = (f"musetag ensemble --method auto --validation {d}/bour2021-predictions/validation/<24 experiments>.npy "
             f"--test {d}/bour2021-predictions/test/<same 24, same order>.npy "
             f"--validation-targets {d}/bour2021-predictions/validation/targets.npy "
             f"--test-targets {d}/mtg-jamendo/mediaeval-results/groundtruth.npy --out DIR")
    lines = [
        "## Ensembles of the 24 Bour 2021 models (MTG-Jamendo split-0)",
        "",
        "Reproduce with `.venv/bin/python bench/ensemble.py`, which runs:",
        "",
        f"    {shown}",
        "",
        f"Wall time {seconds:.0f} s on the shared 2-core machine (all seven methods, each cross-validated). "
        "Weights and choices are fitted on validation only; test targets are only used to score. The CV column "
        "is the mean held-out score over 5 contiguous folds of validation (AP on a fifth of the tracks runs "
        "higher than on all of them, so compare it only within the column).",
        "",
        *_table(meta),
        "",
        f"`--method auto` chose **{meta['method']}** (shrinkage {meta['params'].get('shrinkage', '-')}): "
        f"test PR-AUC-macro **{auto_test:.6f}** against the published 3-average's {PUBLISHED:.6f} "
        f"(ratio {auto_test / PUBLISHED:.4f}).",
        "",
        f"Is it really better? Paired bootstrap over the 4,231 test tracks (500 resamples): difference "
        f"{cmp['difference']:+.6f}, 95% interval [{cmp['low']:+.6f}, {cmp['high']:+.6f}], one-sided p = "
        f"{cmp['p_value']:.3f}. The gain is small next to the test set's sampling noise.",
        "",
        "Validation barely predicts test on these models (the 24 models' validation and test PR-AUC-macro "
        "correlate at about 0.14): methods that fit many weights gain on validation and give it back on test; "
        "per-tag selection shrunk towards the mean is the fitted method that transfers.",
        "",
    ]
    if meta_g is not None:
        lines += [
            f"With artist-grouped folds (`--groups {d}/mtg-jamendo/splits/split-0/autotagging_moodtheme-validation.tsv`, "
            f"{seconds_g:.0f} s), auto chose **{meta_g['method']}** (shrinkage {meta_g['params'].get('shrinkage', '-')}): "
            f"test PR-AUC-macro **{meta_g['test_score']:.6f}**.",
            "",
            *_table(meta_g),
            "",
            "Random (shuffled) folds are not offered: "
            "an artist's tracks on both sides of a fold made full per-tag selection look about four times better than artist-grouped folds do (+0.013 over the mean instead of +0.003), and chose shrinkage 1.0 (test 0.1460). The choice of folds moves the chosen shrinkage between 0.5 and 0.75 and the test score by about 0.0017, the same size as the paired-bootstrap interval above: the target (above 0.150872) is met with the default folds, not by a margin the test set can confirm.",
            "",
        ]
    (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (REPO / "bench" / "results" / "ensemble.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
