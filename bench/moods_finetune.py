"""Fine-tuning for hundreds of clips vs the best probe, on the same grouped folds of Emotify (issue 25, item 6).

Data: ``../shared/data/emotify`` (400 real clips, nine GEMS emotions at >= 30 % listener agreement, its
own artist-grouped split: train 250 / validation 64 / test 86), multilabel.

For each seed s: the 5 folds of train+validation grouped by artist (``make_folds`` of probe-auto, seed s)
are shared by every arm:

- fine-tune: ``smalldata-finetune-musicnn`` (the published jamendo-musicnn weights; ``--keep-frozen`` stages
  frozen throughout: 9 = the mel front end and the back-end convolutions, 6 = the front end only; the new
  classifier alone for the first epoch, then the rest at lr x 0.1; random 3 s crops, mixup, gain,
  SpecAugment; ``--epochs``), one run per fold on the fold's training tracks, seed s, the held-out
  tracks predicted after the last epoch (:func:`musetag.training.finetune_candidate.cross_validate_finetune`:
  nothing is chosen on them);
- probe-linear / probe-mlp on ``embed:jamendo-musicnn`` (the same backbone's cached embedding, read from
  the shared store ``--store``), C by the same grid probe-auto uses, scored on the same folds
  (:func:`musetag.training.probe_cv.cross_validate`; the CV score is at the best C, as probe-auto reports it).

CV figure: PR-AUC-macro over the tags with at least 5 positives and negatives in train+validation, of
the pooled out-of-fold predictions (and per fold). Then, per seed, one final fit of each arm on
train+validation (the probe at its CV-chosen C), scored once on the test split with a bootstrap 95 %
interval (``musetag.evaluate.stats.bootstrap_ci``, 1000 resamples). CPU: ``time.process_time`` of the
process per run (one torch thread; the data loader runs in the process).

Work units (seed, fold) are cached in ``--work`` (``units.jsonl`` + predictions), so several processes can
share them (``--shard i/n``) and a rerun only adds what is missing. One process without ``--shard`` runs every
unit and writes the table; ``--report`` only writes the table from the units done so far. Without ``--work`` it
runs nothing and says so (``make bench`` keeps the recorded runs, as for ``bench/moods.py``).

Usage: python bench/moods_finetune.py --work DIR [--wave-cache DIR] [--seeds 0,1,2] [--epochs 2] [--keep-frozen 9]
[--freeze-epochs 1] [--eval-segments 3] [--shard 0/2] [--report] [--out FILE]
Writes bench/results/moods-finetune.md (``--out``). The three committed result files:
``--epochs 2 --keep-frozen 9`` (moods-finetune.md), ``--epochs 2 --keep-frozen 6 --out
bench/results/moods-finetune-keep6.md`` and ``--epochs 15 --keep-frozen 6 --freeze-epochs 3 --eval-segments 5 --out
bench/results/moods-finetune-15ep.md`` (the recipe's own length and schedule).
"""
from __future__ import annotations

import argparse
import fcntl
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
RECIPE = "smalldata-finetune-musicnn"
BACKBONE = "jamendo-musicnn"
FOLDS = 5
GRID = [0.01, 0.1, 1.0, 10.0]
#: init.keep_frozen of smalldata-finetune-musicnn's stages, in words
FROZEN = {6: "the mel front end (spec_bn and the 5 front-end convolutions)",
          9: "the mel front end and the 3 back-end convolutions (the dense layer, its batch norm and the classifier learn)"}
MLP_GRID = [1.0, 10.0]


def dataset_toml(work: Path, preset: str, cache: Path, store: str | None = None) -> Path:
    name = f"emotify-{preset.replace(':', '_')}.toml"
    text = f'reader = "csv"\ntask = "multilabel"\npreset = "{preset}"\ncache = "{cache}"\n'
    if store:
        text += f'store = "{store}"\n'
    (work / name).write_text(text + f'[paths]\nmanifest = "{DATA / "emotify.csv"}"\n')
    return work / name


def ft_sets(args) -> list[str]:
    return [f"epochs={args.epochs}", f"init.freeze_epochs={args.freeze_epochs}", f"init.keep_frozen={args.keep_frozen}",
            f"data.eval_max_segments={args.eval_segments}"]


# ------------------------------------------------------------------------------------------ work units
def done_units(work: Path) -> dict:
    path = work / "units.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["unit"]: r for r in rows}


def record(work: Path, row: dict) -> None:
    with open(work / "units.jsonl", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps(row) + "\n")


def run_units(args, work: Path) -> None:
    import torch

    from musetag.training.finetune_candidate import (cross_validate_finetune, fixed_length_sets, load_pool,
                                                     pooled_split, train_on, with_splits)
    from musetag.training.loop import _run
    from musetag.training.probe_cv import make_folds, rare_outputs

    torch.set_num_threads(1)
    wave = dataset_toml(work, "waveform16k", args.wave_cache or work / "wave")
    data = load_pool(RECIPE, wave, ft_sets(args))
    pool = pooled_split(data)
    groups = groups_of(wave, pool.ids)
    keep = ~rare_outputs("multilabel", pool.targets, FOLDS)
    units = [(s, f) for s in args.seeds for f in [*range(FOLDS), "final"]]
    shard, n_shards = args.shard
    for i, (seed, fold) in enumerate(units):
        name = f"ft-s{seed}-{fold}"
        if i % n_shards != shard or name in done_units(work):
            continue
        folds = make_folds("multilabel", pool.targets, groups, FOLDS, seed)
        t0 = time.process_time()
        out = work / "runs" / name
        if fold == "final":
            train_on(RECIPE, wave, with_splits(data, pool, data.splits["validation"], data.splits["test"]), out,
                     fixed_length_sets(RECIPE, [*ft_sets(args), f"seed={seed}"]), _run)
            row = {"unit": name, "seed": seed, "fold": fold, "cpu_s": time.process_time() - t0,
                   "test": str(out / "predictions" / "test.npy")}
        else:
            cand = cross_validate_finetune(RECIPE, wave, data, [folds[fold]], keep, out, _run,
                                           sets=ft_sets(args),
                                           seed=seed)
            te = folds[fold][1]
            np.save(work / f"{name}.npy", cand.oof[0][te])
            row = {"unit": name, "seed": seed, "fold": fold, "cpu_s": cand.cpu_s, "score": cand.per_fold[0][0],
                   "pred": str(work / f"{name}.npy")}
        record(work, row)
        logging.info("%s: %s", name, row)


def groups_of(toml: Path, ids: list[str]) -> list[str]:
    """The artist (group column) of each track id of the Emotify manifest."""
    from musetag.data import load_dataset_config
    from musetag.data.datasets import load_records

    recs = {r.id: r.group for r in load_records(load_dataset_config(toml))}
    return [recs[i] for i in ids]


# ------------------------------------------------------------------------------------------ probes + report
def probe_arms(args, work: Path, pool_ids: list[str], test_ids: list[str], y, y_test, groups, keep) -> dict:
    """CV and final test of probe-linear / probe-mlp on the backbone's cached embedding, per seed."""
    from musetag.data import load_dataset_config
    from musetag.data.datasets import load_records
    from musetag.data.store import default_store
    from musetag.training.data import prepare_cache
    from musetag.training.probe_cv import Candidate, cross_validate, fit_grid, make_folds
    from musetag.training.probe import predict

    out = {}
    saved = work / "probes.json"  # (head, seed) -> figures: a rerun of --report refits nothing (and embeds nothing)
    cache = json.loads(saved.read_text()) if saved.exists() else {}
    if all(f"probe-{head}/{seed}" in cache for seed in args.seeds for head in ("linear", "mlp")):
        x = x_test = None
    else:
        toml = dataset_toml(work, f"embed:{BACKBONE}@layers=features", work / f"emb-{BACKBONE}", args.store)  # penultimate mean
        ds = load_dataset_config(toml)
        records = load_records(ds)
        paths = prepare_cache(records, ds.feature_config(), work / f"emb-{BACKBONE}", progress=False,
                              store=default_store(ds, work / f"emb-{BACKBONE}"))
        emb = {r.id: np.load(paths[r.id]).reshape(-1).astype(np.float32) for r in records}
        x, x_test = np.stack([emb[i] for i in pool_ids]), np.stack([emb[i] for i in test_ids])
    for seed in args.seeds:
        for head, grid in (("linear", GRID), ("mlp", MLP_GRID)):
            key = f"probe-{head}/{seed}"
            if key in cache:
                out[(f"probe-{head}", seed)] = {**cache[key], "test_pred": np.asarray(cache[key]["test_pred"], np.float32)}
                continue
            folds = make_folds("multilabel", y, groups, FOLDS, seed)
            t0 = time.process_time()
            cand = cross_validate(Candidate((BACKBONE,), head, list(grid)), "multilabel", y.shape[1], x, y,
                                  [x.shape[1]], folds, keep, seed=seed, hidden=128, max_iter=150)
            model = fit_grid(head, "multilabel", y.shape[1], x, y, [x.shape[1]], [cand.C], seed=seed, hidden=128,
                             max_iter=150)[0]
            pred = predict(model, x_test, "multilabel")
            out[(f"probe-{head}", seed)] = {"cv": cand.score, "per_fold": cand.per_fold[cand.best], "C": cand.C,
                                             "cpu_s": time.process_time() - t0, "test_pred": pred}
            cache[key] = {**out[(f"probe-{head}", seed)], "test_pred": pred.tolist()}
            saved.write_text(json.dumps(cache, default=float))
            logging.info("%s: CV %.4f (C=%g), %.1f CPU s", key, cand.score, cand.C, time.process_time() - t0)
    return out


def test_figures(y_test, pred) -> dict:
    from musetag.evaluate.stats import bootstrap_ci

    cols = (y_test.sum(0) > 0) & (y_test.sum(0) < len(y_test))
    return bootstrap_ci(y_test[:, cols], pred[:, cols], n_resamples=1000, seed=0)


def _mean_spread(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.4f} ± {v.std():.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def report(args, work: Path) -> str:
    from musetag.training.finetune_candidate import load_pool, pooled_split
    from musetag.training.probe_cv import make_folds, metric_on, rare_outputs

    wave = dataset_toml(work, "waveform16k", args.wave_cache or work / "wave")
    data = load_pool(RECIPE, wave, ft_sets(args))
    pool, test = pooled_split(data), data.splits["test"]
    y, y_test = pool.targets, test.targets
    groups = groups_of(wave, pool.ids)
    keep = ~rare_outputs("multilabel", y, FOLDS)
    probes = probe_arms(args, work, pool.ids, test.ids, y, y_test, groups, keep)
    units = done_units(work)
    rows, per_fold_lines = [], []
    arms = {}
    for seed in args.seeds:
        folds = make_folds("multilabel", y, groups, FOLDS, seed)
        fts = [units.get(f"ft-s{seed}-{f}") for f in range(FOLDS)]
        if all(fts):
            oof = np.zeros_like(y)
            for (_, te), u in zip(folds, fts):
                oof[te] = np.load(u["pred"])
            fin = units.get(f"ft-s{seed}-final")
            per_fold = [metric_on(oof[te], y[te], "multilabel", keep) for _, te in folds]
            arms[("fine-tune", seed)] = {"cv": metric_on(oof, y, "multilabel", keep), "per_fold": per_fold,
                                         "cpu_s": sum(u["cpu_s"] for u in fts), "final_cpu_s": fin and fin["cpu_s"],
                                         "test_pred": np.load(fin["test"]) if fin else None}
        arms.update({k: v for k, v in probes.items() if k[1] == seed})
    names = ["fine-tune", "probe-linear", "probe-mlp"]
    for name in names:
        got = [arms[(name, s)] for s in args.seeds if (name, s) in arms]
        if not got:
            rows.append(f"| {name} | not run | | | | |")
            continue
        tests = [test_figures(y_test, a["test_pred"]) for a in got if a.get("test_pred") is not None]
        pr = _mean_spread([t["PR-AUC-macro"]["value"] for t in tests]) if tests else "n/a"
        ci = "; ".join(f"[{t['PR-AUC-macro']['low']:.3f}, {t['PR-AUC-macro']['high']:.3f}]" for t in tests)
        roc = _mean_spread([t["ROC-AUC-macro"]["value"] for t in tests]) if tests else "n/a"
        rows.append(f"| {name} | {len(got)} | {_mean_spread([a['cv'] for a in got])} | {pr} | {ci} | {roc} | "
                    f"{np.mean([a['cpu_s'] for a in got]):.1f} |")
        for a, s in zip(got, [s for s in args.seeds if (name, s) in arms]):
            per_fold_lines.append(f"| {name} | {s} | " + " | ".join(f"{v:.3f}" for v in a["per_fold"]) + f" | {a['cv']:.4f} |")
    verdict = _verdict(arms, args.seeds)
    return "\n".join([
        "# Fine-tuning vs the best probe on moods (Emotify, issue 25 item 6)",
        "",
        f"Written by `python bench/moods_finetune.py --work DIR --seeds {','.join(map(str, args.seeds))} --epochs "
        f"{args.epochs} --keep-frozen {args.keep_frozen} --freeze-epochs {args.freeze_epochs} --eval-segments "
        f"{args.eval_segments} --report` on {platform.machine()}, {time.strftime('%Y-%m-%d')}: "
        "2 CPU cores, shared with other jobs while the units ran (CPU seconds are the process's own, one torch thread).",
        "",
        f"Emotify, multilabel (9 GEMS emotions at >= 30 % agreement). Folds: {FOLDS} folds of train+validation "
        "(314 clips) grouped by artist, drawn with the seed; every arm of a seed sees the same folds. "
        f"Fine-tune: `{RECIPE}` with `--set " + " ".join(ft_sets(args)) + "` (published jamendo-musicnn "
        f"weights; {FROZEN.get(args.keep_frozen, f'the first {args.keep_frozen} stages')} frozen throughout, the new "
        f"classifier alone for the first {_epochs(args.freeze_epochs)}, then the rest of the body at lr x 0.1; random 3 s "
        "crops, mixup, gain, SpecAugment; the last epoch is kept (no early stopping, no SWA), nothing chosen on held-out "
        f"clips; {args.eval_segments} evenly spaced 3 s windows per clip scored). "
        f"Probes: `embed:{BACKBONE}` (the same backbone's penultimate-layer "
        f"mean), C from {GRID} (linear) / {MLP_GRID} (MLP, 128 hidden) at its best pooled CV score, as probe-auto does.",
        "",
        "| arm | seeds | CV PR-AUC-macro (mean ± sd over seeds) | test PR-AUC-macro (final fit on train+validation) "
        "| test 95 % bootstrap interval per seed | test ROC-AUC-macro | CPU s per CV (5 folds) |",
        "|---|---:|---:|---:|---|---:|---:|",
        *rows,
        "",
        "Per fold (CV PR-AUC-macro of each held-out fold; tags with >= 5 positives and negatives in train+validation):",
        "",
        "| arm | seed | " + " | ".join(f"fold {k + 1}" for k in range(FOLDS)) + " | pooled |",
        "|---|---:|" + "---:|" * (FOLDS + 1),
        *per_fold_lines,
        "",
        *_paired(units, probes, y, groups, keep, args.seeds),
        "",
        verdict,
        "",
        "Scope and caveats. Three settings were measured (three result files of this script): 2 epochs with "
        "`--keep-frozen 9` (moods-finetune.md: the back-end convolutions stay frozen), 2 epochs with `--keep-frozen 6` "
        "(moods-finetune-keep6.md: the back end learns from epoch 2), and the recipe's own length and schedule, 15 epochs "
        "with the classifier alone for the first 3 and `--keep-frozen 6`, 5 windows scored (moods-finetune-15ep.md); the "
        "recipe's early stopping and SWA are off in all three, since nothing may be chosen on the held-out fold. The "
        "pooled CV figure puts the five folds' predictions into one ranking: five separately fine-tuned networks are "
        "calibrated less alike than five probes, so the per-fold table (and its mean in the verdict) is the fairer "
        "comparison. CPU seconds depend on how busy the machine is: the same linear-probe CV took 67 CPU s at load 12 "
        "and 10 CPU s on an idle machine, and a fold's fine-tune 62 CPU s at load 12 against 37-41 idle, so "
        "compare costs within a table only. The probes are deterministic given the folds (linear: the same test "
        "score for every seed).",
        "",
    ])


def _epochs(n: int) -> str:
    return "epoch" if n == 1 else f"{n} epochs"


def _paired(units: dict, probes: dict, y, groups, keep, seeds) -> list[str]:
    """Every fine-tuned fold (complete seeds or not) beside the probes on the same held-out clips."""
    from musetag.training.probe_cv import make_folds, metric_on

    lines = ["Paired, fold by fold (every fine-tuned fold, also of seeds not completed; CPU s of the fine-tune run):", "",
             "| seed | fold | fine-tune | probe-linear | probe-mlp | fine-tune CPU s |", "|---:|---:|---:|---:|---:|---:|"]
    wins = n = 0
    for seed in seeds:
        folds = make_folds("multilabel", y, groups, FOLDS, seed)
        for f, (_, te) in enumerate(folds):
            u = units.get(f"ft-s{seed}-{f}")
            lin, mlp = probes.get(("probe-linear", seed)), probes.get(("probe-mlp", seed))
            if not u or not lin or not mlp:
                continue
            ft = metric_on(np.load(u["pred"]), y[te], "multilabel", keep)
            best = max(lin["per_fold"][f], mlp["per_fold"][f])
            wins, n = wins + (ft > best), n + 1
            lines.append(f"| {seed} | {f + 1} | {ft:.3f} | {lin['per_fold'][f]:.3f} | {mlp['per_fold'][f]:.3f} | "
                         f"{u['cpu_s']:.0f} |")
    finals = [u for k, u in units.items() if k.endswith("-final")]
    lines += ["", f"Fine-tune beat both probes on {wins} of {n} held-out folds."]
    if finals:
        lines.append(f"The final fine-tune on train+validation (314 clips) cost {np.mean([u['cpu_s'] for u in finals]):.0f} "
                     "CPU s (mean over its seeds).")
    return lines


def _verdict(arms: dict, seeds) -> str:
    ft = [arms[("fine-tune", s)]["cv"] for s in seeds if ("fine-tune", s) in arms]
    best = {}
    for name in ("probe-linear", "probe-mlp"):
        v = [arms[(name, s)]["cv"] for s in seeds if (name, s) in arms]
        if v:
            best[name] = float(np.mean(v))
    if not ft or not best:
        return "**Verdict:** incomplete (see the table)."
    name = max(best, key=best.get)
    wins = sum(arms[("fine-tune", s)]["cv"] > arms[(name, s)]["cv"] for s in seeds if ("fine-tune", s) in arms)
    gap = float(np.mean(ft)) - best[name]
    cost = np.mean([arms[("fine-tune", s)]["cpu_s"] for s in seeds if ("fine-tune", s) in arms]) / max(
        1e-9, np.mean([arms[(name, s)]["cpu_s"] for s in seeds if (name, s) in arms]))
    word = "beats" if gap > 0 and wins == len(ft) else "does not beat"
    fold_mean = {arm: float(np.mean([np.mean(arms[(arm, s)]["per_fold"]) for s in seeds if (arm, s) in arms]))
                 for arm in ("fine-tune", name)}
    return (f"**Verdict:** fine-tuning {word} the best probe ({name}): CV PR-AUC-macro {np.mean(ft):.4f} against "
            f"{best[name]:.4f} ({gap:+.4f}; higher on {wins} of {len(ft)} seeds), at {cost:.0f}x its CPU cost. Mean "
            f"of the per-fold figures: {fold_mean['fine-tune']:.4f} against {fold_mean[name]:.4f}.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=None,
                   help="working folder for the units (without it the script only says how to run it)")
    p.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--keep-frozen", type=int, default=9,
                   help="stages frozen for the whole run (6: the front end; 9: also the back-end convolutions)")
    p.add_argument("--freeze-epochs", type=int, default=1, help="epochs in which only the new classifier learns")
    p.add_argument("--eval-segments", type=int, default=3, help="evenly spaced 3 s windows scored per held-out clip")
    p.add_argument("--shard", default="0/1", type=lambda s: tuple(int(x) for x in s.split("/")))
    p.add_argument("--store", default=None, help="an embedding store to reuse embed:NAME arrays from (default: none, "
                                                 "the probe's embeddings are computed in WORK)")
    p.add_argument("--wave-cache", type=Path, default=None, help="the 16 kHz waveform cache (default WORK/wave)")
    p.add_argument("--report", action="store_true", help="only write the table from the units done so far")
    p.add_argument("--out", type=Path, default=BENCH / "results" / "moods-finetune.md")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.work is None:  # as bench/moods.py: `make bench` (bench/run_all.py) keeps the recorded runs
        print("moods_finetune: a long experiment (15 to 60 CPU minutes), not rerun here; bench/results/moods-finetune*.md "
              "keep the recorded runs. Run it with: python bench/moods_finetune.py --work DIR (see the module docstring)")
        return
    if not (DATA / "emotify.csv").exists():
        sys.exit(f"{DATA} not found: this benchmark needs the shared Emotify clips")
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.report:
        run_units(args, args.work)
    if args.report or args.shard == (0, 1):  # one process ran every unit: write the table too
        text = report(args, args.work)
        args.out.write_text(text)
        print(text)


if __name__ == "__main__":
    main()
