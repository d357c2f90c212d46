"""Moods from a user's own labels on real emotion data: Emotify (issue 25's evidence).

Data: ``../shared/data/emotify`` (400 real clips, nine GEMS emotions; its own artist-grouped split:
train 250 / validation 64 / test 86). Two tasks on the same clips:

- multilabel: the ``tags`` column (emotions at >= 30 % listener agreement); test PR-AUC-macro and
  ROC-AUC-macro with bootstrap 95 % intervals (``musetag.evaluate.stats.bootstrap_ci``, 1000 resamples);
- regression: the nine agreement fractions (``task = "regression"``); test mean R² and mean Pearson r
  with bootstrap intervals.

Arms:
(a) classical baseline: log-mel (96 bands) + 20 MFCC, mean and std over time (232 numbers per clip, as
    ``bench/fewshot.py``), standardised; scikit-learn ``LogisticRegression`` per tag (C on validation
    PR-AUC-macro) / ``Ridge`` (alpha on validation mean R²);
(b) ``musetag train probe-linear`` / ``probe-mlp`` on ``embed:BACKBONE`` for each backbone whose cache is complete;
(c) ``musetag train probe-auto`` over those backbones (the one documented command).

Embeddings are read from ``--cache DIR/BACKBONE`` (fill them once with ``musetag prepare`` of a dataset
TOML with ``preset = "embed:BACKBONE"`` and ``cache = "DIR/BACKBONE"``, or ``--embed``); an incomplete
cache is reported and its arms skipped, never silently computed for hours. CPU: ``time.process_time``
of this process per arm (fit + choice + test scoring), extraction per clip from the cache's record.

Usage: python bench/moods.py --work DIR --cache DIR [--backbones a,b] [--arms classical,probe,auto] [--embed]
Writes bench/results/moods.md (or --report).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
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
C_GRID = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]


def rows() -> list[dict]:
    with open(DATA / "emotify.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def dataset_toml(work: Path, task: str, preset: str) -> Path:
    name = f"emotify-{task}-{preset.replace(':', '_').replace('+', '_')}.toml"
    text = f'reader = "csv"\ntask = "{task}"\npreset = "{preset}"\n'
    if task == "regression":
        text += "targets = [" + ", ".join(f'"{e}"' for e in EMOTIONS) + "]\n"
    text += f'[paths]\nmanifest = "{DATA / "emotify.csv"}"\n'
    (work / name).write_text(text)
    return work / name


# ------------------------------------------------------------------------------------------ (a) classical
def classical_features(all_rows, work: Path) -> tuple[np.ndarray, float]:
    path = work / "classical.npz"
    if path.exists():
        z = np.load(path)
        return z["x"], float(z["cpu_per_clip"])
    import librosa

    from musetag.audio import load_audio

    t0 = time.process_time()
    feats = []
    for r in all_rows:
        audio, sr = load_audio(DATA / r["path"], sample_rate=22050, mono=True)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        logmel = librosa.power_to_db(librosa.feature.melspectrogram(y=audio, sr=sr, n_mels=96))
        mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=20)
        feats.append(np.concatenate([logmel.mean(1), logmel.std(1), mfcc.mean(1), mfcc.std(1)]))
    cpu = (time.process_time() - t0) / len(all_rows)
    x = np.stack(feats).astype(np.float32)
    np.savez(path, x=x, cpu_per_clip=cpu)
    return x, cpu


def targets(all_rows):
    tags = sorted({t for r in all_rows for t in r["tags"].split(";") if t})
    y_ml = np.array([[t in r["tags"].split(";") for t in tags] for r in all_rows], dtype=np.float32)
    y_rg = np.array([[float(r[e]) for e in EMOTIONS] for r in all_rows], dtype=np.float32)
    split = np.array([r["split"] for r in all_rows])
    return y_ml, y_rg, split


def classical_arms(x, y_ml, y_rg, split) -> dict:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    from musetag.training.scoring import score

    tr, va, te = split == "train", split == "validation", split == "test"
    z = StandardScaler().fit(x[tr]).transform(x)
    t0 = time.process_time()
    best = None
    for c in C_GRID:
        p = np.stack([LogisticRegression(C=c, max_iter=5000).fit(z[tr], y_ml[tr, j]).predict_proba(z)[:, 1]
                      for j in range(y_ml.shape[1])], 1)
        v = score(p[va], y_ml[va], "multilabel")["pr_auc_macro"]
        if best is None or v > best[0]:
            best = (v, c, p)
    ml = {"pred": best[2][te], "C": best[1], "cpu_s": time.process_time() - t0}
    t0 = time.process_time()
    best = None
    for alpha in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]:
        p = Ridge(alpha=alpha).fit(z[tr], y_rg[tr]).predict(z)
        v = score(p[va], y_rg[va], "regression")["r2_mean"]
        if best is None or v > best[0]:
            best = (v, alpha, p)
    rg = {"pred": best[2][te], "alpha": best[1], "cpu_s": time.process_time() - t0}
    return {"multilabel": ml, "regression": rg}


# ------------------------------------------------------------------------------------------ scoring
def with_intervals(pred, y, task: str, seed: int = 0, n: int = 1000) -> dict:
    from musetag.training.probe_auto import _bootstrap
    from musetag.training.scoring import score

    out = {k: v for k, v in score(pred, y, task).items() if isinstance(v, float)}
    for k, v in _bootstrap(y, pred, task, None, n, seed).items():
        out[f"{k} interval"] = [v["low"], v["high"]]
    return out


def cache_complete(cache: Path, n: int) -> bool:
    index = cache / "index.json"
    if not index.is_file():
        return False
    return len(json.loads(index.read_text()).get("tracks", [])) == n


def train_arm(recipe: str, toml: Path, out: Path, sets: list[str]) -> tuple[dict, float]:
    import musetag

    t0 = time.process_time()
    musetag.train(recipe, data=toml, out=out, sets=["progress=false", *sets])
    return json.loads((out / "summary.json").read_text()), time.process_time() - t0


# ------------------------------------------------------------------------------------------ report
def _cell(d: dict, key: str, interval: str) -> str:
    if key not in d:
        return "-"
    iv = d.get(f"{interval} interval")
    return f"{d[key]:.3f}" + (f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "")


def write_report(results: list[dict], notes: list[str], path: Path) -> None:
    lines = [
        "## Moods from your own labels: Emotify (`bench/moods.py`)",
        "",
        "Data: `../shared/data/emotify` (400 real clips, 9 GEMS emotions; the set's artist-grouped split: train 250,"
        " validation 64, test 86). Multilabel: emotions at >= 30 % listener agreement. Regression: the nine agreement"
        " fractions. Test figures with 95 % bootstrap intervals (1000 resamples of the 86 test clips). CPU: seconds of"
        f" this process per arm (fit, choice, test scoring), {platform.machine()}, 2 cores shared with other jobs.",
        "",
        "| arm | PR-AUC-macro | ROC-AUC-macro | mean R² (9 fractions) | mean Pearson r | CPU s (multilabel / regression) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ml, rg = r.get("multilabel", {}), r.get("regression", {})
        cpu = f"{ml.get('cpu_s', float('nan')):.1f} / {rg.get('cpu_s', float('nan')):.1f}"
        lines.append(f"| {r['arm']} | {_cell(ml, 'pr_auc_macro', 'PR-AUC-macro')} | {_cell(ml, 'roc_auc_macro', 'ROC-AUC-macro')}"
                     f" | {_cell(rg, 'r2_mean', 'r2_mean')} | {_cell(rg, 'pearson_r_mean', 'pearson_r_mean')} | {cpu} |")
    lines += ["", *notes, ""]
    path.write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path)
    ap.add_argument("--cache", type=Path, help="folder of per-backbone embedding caches CACHE/BACKBONE")
    ap.add_argument("--backbones", default="jamendo-musicnn,mtat-musicnn")
    ap.add_argument("--arms", default="classical,probe,auto")
    ap.add_argument("--embed", action="store_true", help="compute missing embeddings (CPU minutes to hours)")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--report", type=Path, default=BENCH / "results" / "moods.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.work is None or args.cache is None:
        print("moods: a long experiment, not rerun here; bench/results/moods.md keeps the recorded run. Run it with: "
              "python bench/moods.py --work DIR --cache DIR (see the module docstring)")
        return
    if not (DATA / "emotify.csv").exists():
        sys.exit(f"{DATA} not found: this benchmark needs the shared Emotify clips")
    args.work.mkdir(parents=True, exist_ok=True)
    all_rows = rows()
    y_ml, y_rg, split = targets(all_rows)
    arms = args.arms.split(",")
    results, notes = [], list(args.note)
    if "classical" in arms:
        x, cpu = classical_features(all_rows, args.work)
        res = classical_arms(x, y_ml, y_rg, split)
        te = split == "test"
        results.append({"arm": f"(a) classical: log-mel + MFCC stats, LogReg (C={res['multilabel']['C']:g}) / Ridge "
                               f"(alpha={res['regression']['alpha']:g})",
                        "multilabel": {**with_intervals(res["multilabel"]["pred"], y_ml[te], "multilabel"),
                                       "cpu_s": res["multilabel"]["cpu_s"]},
                        "regression": {**with_intervals(res["regression"]["pred"], y_rg[te], "regression"),
                                       "cpu_s": res["regression"]["cpu_s"]}})
        notes.append(f"- classical features: {cpu:.2f} CPU s per clip (decode + log-mel + MFCC).")
    ready = []
    for b in [b for b in args.backbones.split(",") if b]:
        if cache_complete(args.cache / b, len(all_rows)) or args.embed:
            ready.append(b)
        else:
            notes.append(f"- `{b}`: embedding cache {args.cache / b} incomplete; its arms were not run (fill it with "
                         "`musetag prepare`, or pass --embed).")
    for b in ready if "probe" in arms else []:
        for recipe in ("probe-linear", "probe-mlp"):
            row = {"arm": f"(b) {recipe} on {b}"}
            for task, y in (("multilabel", y_ml), ("regression", y_rg)):
                out = args.work / "runs" / f"{recipe}-{b}-{task}"
                summary, cpu = train_arm(recipe, dataset_toml(args.work, task, f"embed:{b}"), out,
                                         [f"data.cache_dir={args.cache / b}"])
                pred = np.load(out / "predictions" / "test.npy")
                row[task] = {**with_intervals(pred, y[split == "test"], task), "cpu_s": cpu}
            results.append(row)
    if "auto" in arms and ready:
        row = {"arm": f"(c) probe-auto over {', '.join(ready)} (5 grouped folds)"}
        for task, y in (("multilabel", y_ml), ("regression", y_rg)):
            out = args.work / "runs" / f"probe-auto-{task}"
            summary, cpu = train_arm("probe-auto", dataset_toml(args.work, task, f"embed:{ready[0]}"), out,
                                     [f"data.cache_dir={args.cache}", f"select.backbones={ready}"])
            pred = np.load(out / "predictions" / "test.npy")
            row[task] = {**with_intervals(pred, y[split == "test"], task), "cpu_s": cpu}
            notes.append(f"- probe-auto ({task}) chose {', '.join(summary['select']['chosen'])}.")
        results.append(row)
    write_report(results, notes, args.report)


if __name__ == "__main__":
    main()
