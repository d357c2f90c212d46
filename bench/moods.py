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

(d) the best concatenation: the pair probe-auto's cross-validation ranks first, trained with its head
    (``probe-linear``/``probe-mlp``, C on validation).

gtzan3 (``../shared/data/gtzan3``, 3 genres, 299 clips; no artist column, so a fixed split by file order:
every 5th clip of a genre tested, the next validation, the rest train): test accuracy of the classical
baseline, ``probe-linear`` per backbone and probe-auto.

Embeddings are read from ``--cache DIR/BACKBONE`` (fill them once with ``musetag prepare`` of a dataset
TOML with ``preset = "embed:BACKBONE"`` and ``cache = "DIR/BACKBONE"``, or ``--embed``); an incomplete
cache is reported and its arms skipped, never silently computed for hours. With ``--store DIR`` the
dataset TOMLs name that array store (``store = DIR``): caches are assembled from the per-backbone arrays
already there and a backbone missing there is computed. ``--preset-suffix`` (e.g. ``@layers=features``)
is added to every backbone's preset. CPU: ``time.process_time`` of this process per arm (fit + choice +
test scoring), extraction per clip from the cache's record; the load average is recorded.

Usage: python bench/moods.py --work DIR --cache DIR [--store DIR] [--backbones a,b] [--arms classical,probe,auto,pair,gtzan3] [--embed]
Writes bench/results/moods.md (or --report).
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
GTZAN = ROOT.parent / "shared" / "data" / "gtzan3"
STORE: Path | None = None  # --store
EMOTIONS = ("amazement", "solemnity", "tenderness", "nostalgia", "calmness", "power", "joyful_activation", "tension",
            "sadness")
C_GRID = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]


def rows() -> list[dict]:
    with open(DATA / "emotify.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def dataset_toml(work: Path, task: str, preset: str, manifest: Path = DATA / "emotify.csv", stem: str = "emotify") -> Path:
    safe = preset.replace(':', '_').replace('+', '_').replace('@', '_').replace(',', '_').replace('=', '_')
    name = f"{stem}-{task}-{safe}.toml"
    text = f'reader = "csv"\ntask = "{task}"\npreset = "{preset}"\n'
    if STORE is not None:
        text += f'store = "{STORE}"\n'
    if task == "regression":
        text += "targets = [" + ", ".join(f'"{e}"' for e in EMOTIONS) + "]\n"
    text += f'[paths]\nmanifest = "{manifest}"\n'
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


def write_report(results: list[dict], notes: list[str], path: Path, genre: list[dict]) -> None:
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
    if genre:
        lines += ["", "gtzan3 (3 genres, fixed split by file order: 60 test clips), the same arms:", "",
                  "| arm | test accuracy | CPU s |", "|---|---:|---:|"]
        lines += [f"| {g['arm']} | {g['accuracy']:.3f} | {g['cpu_s']:.1f} |" for g in genre]
    lines += ["", *notes, "",
              "Fine-tuning a catalogue backbone on the same folds (`bench/moods_finetune.py`): the recipe's own 15 "
              "epochs in [`moods-finetune-15ep.md`](moods-finetune-15ep.md), 2-epoch runs in "
              "[`moods-finetune.md`](moods-finetune.md) and [`moods-finetune-keep6.md`](moods-finetune-keep6.md).", ""]
    path.write_text("\n".join(lines))
    print("\n".join(lines))


def gtzan3_manifest(work: Path) -> Path:
    """gtzan3 with a fixed split by file order (every 5th clip of a genre tested, the next validation)."""
    out = work / "gtzan3.csv"
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "tags", "split"])
        for genre in ("classical", "jazz", "rock"):
            for i, f in enumerate(sorted((GTZAN / "audio" / genre).glob("*.mp3"))):
                w.writerow([str(f), genre, ("test", "validation", "train", "train", "train")[i % 5]])
    return out


def gtzan3_arms(work: Path, cache: Path, backbones: list[str], suffix: str) -> tuple[list[dict], list[str]]:
    """gtzan3 test accuracy: classical, probe-linear per backbone, probe-auto over them."""
    manifest = gtzan3_manifest(work)
    with open(manifest, newline="") as fh:
        grows = list(csv.DictReader(fh))
    genres = sorted({r["tags"] for r in grows})
    y = np.array([genres.index(r["tags"]) for r in grows])
    split = np.array([r["split"] for r in grows])
    x = gtzan3_classical(grows, work)
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    tr, va, te = split == "train", split == "validation", split == "test"
    z = StandardScaler().fit(x[tr]).transform(x)
    t0 = time.process_time()
    fits = [(LogisticRegression(C=c, max_iter=5000).fit(z[tr], y[tr]), c) for c in C_GRID]
    model, c = max(fits, key=lambda mc: (mc[0].predict(z[va]) == y[va]).mean())
    out = [{"arm": f"(a) classical, LogReg (C={c:g})", "accuracy": float((model.predict(z[te]) == y[te]).mean()),
            "cpu_s": time.process_time() - t0}]
    for b in backbones:
        toml = dataset_toml(work, "multiclass", f"embed:{b}{suffix}", manifest, "gtzan3")
        run = work / "runs" / f"gtzan3-probe-linear-{b}"
        summary, cpu = train_arm("probe-linear", toml, run, [f"data.cache_dir={cache / ('gtzan3-' + b)}"])
        out.append({"arm": f"(b) probe-linear on {b}", "accuracy": summary["test"].get("accuracy"), "cpu_s": cpu})
    toml = dataset_toml(work, "multiclass", f"embed:{backbones[0]}{suffix}", manifest, "gtzan3")
    run = work / "runs" / "gtzan3-probe-auto"
    summary, cpu = train_arm("probe-auto", toml, run, [f"data.cache_dir={cache / 'gtzan3-auto'}",
                                                      f"select.backbones={[b + suffix for b in backbones]}"])
    out.append({"arm": "(c) probe-auto", "accuracy": summary["test"].get("accuracy"), "cpu_s": cpu})
    return out, [f"- gtzan3 probe-auto chose {', '.join(summary['select']['chosen'])}."]


def gtzan3_classical(grows, work: Path) -> np.ndarray:
    path = work / "gtzan3-classical.npy"
    if path.exists():
        return np.load(path)
    import librosa

    from musetag.audio import load_audio

    feats = []
    for r in grows:
        audio, sr = load_audio(r["path"], sample_rate=22050, mono=True)
        logmel = librosa.power_to_db(librosa.feature.melspectrogram(y=np.asarray(audio, np.float32).reshape(-1), sr=sr, n_mels=96))
        mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=20)
        feats.append(np.concatenate([logmel.mean(1), logmel.std(1), mfcc.mean(1), mfcc.std(1)]))
    np.save(path, np.stack(feats).astype(np.float32))
    return np.load(path)


def _scored_run(args, recipe: str, task: str, preset: str, name: str, sets: list[str], y_test) -> tuple[dict, dict]:
    """Train ``recipe`` on the ``task`` dataset with ``preset`` into ``runs/NAME``: its summary and its test
    scores with bootstrap intervals and CPU seconds."""
    out = args.work / "runs" / name
    summary, cpu = train_arm(recipe, dataset_toml(args.work, task, preset), out, sets)
    return summary, {**with_intervals(np.load(out / "predictions" / "test.npy"), y_test, task), "cpu_s": cpu}


def embedding_arms(args, ready: list[str], y_ml, y_rg, split, notes: list[str]) -> list[dict]:
    """(b) per backbone probe-linear / probe-mlp, (c) probe-auto, (d) its best pair with the best head."""
    arms, results, suffix = args.arms.split(","), [], args.preset_suffix
    te = split == "test"
    for b in ready if "probe" in arms else []:
        for recipe in ("probe-linear", "probe-mlp"):
            row = {"arm": f"(b) {recipe} on {b}{suffix}"}
            for task, y in (("multilabel", y_ml), ("regression", y_rg)):
                _, row[task] = _scored_run(args, recipe, task, f"embed:{b}{suffix}", f"{recipe}-{b}-{task}",
                                           [f"data.cache_dir={args.cache / b}"], y[te])
            results.append(row)
    if "auto" not in arms or not ready:
        return results
    from musetag.inference.embed_spec import DEFAULT_LAYERS

    vectors = f"`{suffix}`" if suffix else f"`embed:NAME` = `NAME@layers={DEFAULT_LAYERS}`, the default"
    row, pair = {"arm": "(c) probe-auto (its defaults: 5 grouped folds; " + (
        "every catalogue backbone" if args.default_backbones else f"backbones {', '.join(ready)}") + f"; {vectors})"}, None
    for task, y in (("multilabel", y_ml), ("regression", y_rg)):
        sets = [f"data.cache_dir={args.cache}"] + ([] if args.default_backbones else
                                                  [f"select.backbones={[b + suffix for b in ready]}"])
        summary, row[task] = _scored_run(args, "probe-auto", task, f"embed:{ready[0]}{suffix}",
                                         f"probe-auto-{task}", sets, y[te])
        notes.append(f"- probe-auto ({task}) chose {', '.join(summary['select']['chosen'])}; "
                     f"{summary['select']['cpu_s']:.0f} CPU s in all (embedding excluded: read from the store).")
        if task == "multilabel":
            pairs = [c for c in summary["select"]["candidates"] if "+" in c["candidate"].split(" / ")[0]]
            pair = pairs[0]["candidate"] if pairs else None
    results.append(row)
    if pair and "pair" in arms:
        blocks, head = (p.strip() for p in pair.split(" / "))
        recipe = f"probe-{head}"
        row = {"arm": f"(d) best concatenation by CV: {recipe} on {blocks}"}
        for task, y in (("multilabel", y_ml), ("regression", y_rg)):
            _, row[task] = _scored_run(args, recipe, task, f"embed:{blocks}", f"pair-{task}",
                                       [f"data.cache_dir={args.cache / 'pair'}"], y[te])
        results.append(row)
    return results


def main() -> None:
    global STORE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path)
    ap.add_argument("--cache", type=Path, help="folder of per-backbone embedding caches CACHE/BACKBONE")
    ap.add_argument("--store", type=Path, help="array store the dataset TOMLs name (per-backbone arrays reused)")
    ap.add_argument("--backbones", default="jamendo-musicnn,mtat-musicnn")
    ap.add_argument("--default-backbones", action="store_true", help="probe-auto with its default backbones")
    ap.add_argument("--preset-suffix", default="", help="added to every backbone's preset, e.g. @layers=features")
    ap.add_argument("--arms", default="classical,probe,auto,pair,gtzan3")
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
    STORE = args.store
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
        if args.store is not None or cache_complete(args.cache / b, len(all_rows)) or args.embed:
            ready.append(b)
        else:
            notes.append(f"- `{b}`: embedding cache {args.cache / b} incomplete; its arms were not run (fill it with "
                         "`musetag prepare`, or pass --embed).")
    results += embedding_arms(args, ready, y_ml, y_rg, split, notes)
    genre = gtzan3_arms(args.work, args.cache, ready, args.preset_suffix) if "gtzan3" in arms and ready else ([], [])
    notes += genre[1]
    notes.append(f"- load average (1, 5, 15 min) at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())} on "
                 f"{os.cpu_count()} cores.")
    write_report(results, notes, args.report, genre[0])


if __name__ == "__main__":
    main()
