"""``musetag score``: the official MediaEval result table for a prediction matrix."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter, non_negative_int

    p = subparsers.add_parser(
        "score",
        help="score predictions with the official MediaEval metrics",
        description=(
            "Prints and writes the official MediaEval table (ROC-AUC and PR-AUC macro/micro on the scores; "
            "precision, recall and F-score macro/micro on boolean decisions). Decisions come from --decisions, "
            "or are tuned per tag (maximum F1) on validation with --thresholds-from VAL_PRED.npy VAL_GT.npy. "
            "Example: musetag score test.npy --groundtruth groundtruth.npy --thresholds-from val.npy val_gt.npy "
            "--out results.tsv. Several prediction files are scored against the same ground truth in one process "
            "(musetag score A.npy B.npy C.npy -g gt.npy --out table.csv): one table per run on stdout and, with --out, "
            "one combined table (a row per run; CSV when the name ends in .csv, else TSV). A prediction file that cannot be "
            "scored (unreadable, NaN, the wrong shape) is reported by name and the others are still scored and written; "
            "exit status 3 then (2 when none could be scored)."),
        formatter_class=HelpFormatter,
    )
    p.add_argument("predictions", nargs="+", help="NPY file(s) of scores (tracks x tags); several are scored one by one")
    # not required=True: a run folder given as PREDICTIONS is answered with the command that scores it first
    p.add_argument("--groundtruth", "-g", help="NPY file of the multi-hot ground truth (tracks x tags) (required)")
    p.add_argument("--tags", help="tag list, one per line (names tags in warnings, --per-tag and the confusion "
                   "matrix); default: tags.txt beside the predictions (a training run's predictions/ folder)")
    p.add_argument("--task", choices=["multilabel", "multiclass", "regression"],
                   help="default: the run's own task for predictions in a training run's predictions/ folder (its "
                        "summary.json), else multilabel. "
                        "multiclass: ground truth holds class indices; prints accuracy, balanced accuracy, "
                        "macro-F1 and the confusion matrix. regression: ground truth holds values (tracks x "
                        "targets); prints R², Pearson r and CCC per target and their means")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--decisions", "-d", help="NPY file of boolean decisions (tracks x tags)")
    src.add_argument("--thresholds-from", nargs=2, metavar=("VAL_PRED", "VAL_GT"),
                     help="tune per-tag F1-optimal thresholds on these validation predictions and ground truth")
    src.add_argument("--thresholds", help="thresholds file (tag<TAB>value per line) to apply")
    p.add_argument("--out", "-o", help="write the table here (TSV, official format); tuned thresholds go beside it "
                   "as <name>_thresholds.txt. With several prediction files (or a name ending in .csv): one combined "
                   "table, a row per run")
    p.add_argument("--save-decisions", help="with --thresholds-from/--thresholds: write the boolean decisions (NPY)")
    p.add_argument("--per-tag", action="store_true", help="also print per-tag PR-AUC and ROC-AUC")
    p.add_argument("--bootstrap", type=non_negative_int, default=0, metavar="N",
                   help="add 95%% bootstrap confidence intervals for ROC-AUC/PR-AUC macro from N resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--ci-method", default="percentile", choices=["percentile", "basic"],
                   help="bootstrap interval: percentile, or basic (corrects the upward bias of AP on resamples)")
    p.add_argument("--json", help="write everything (table, per-tag, thresholds, intervals) as JSON here")
    from musetag.commands import add_progress_arguments

    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from musetag.commands import show_progress
    from musetag.evaluate import evaluate, format_table, load_array, save_thresholds, write_table
    from musetag.outputs import check_writable

    _check_inputs(args)
    for flag, path in (("--out", args.out), ("--json", args.json), ("--save-decisions", args.save_decisions)):
        if path:  # before the work, not after the table is printed
            check_writable(path, flag=flag)

    if args.task is None:
        from musetag.evaluate import task_beside

        args.task, where = task_beside(args.predictions)
        if args.task is not None and args.task != "multilabel":
            print(f"task {args.task} from {where}", file=sys.stderr)
        args.task = args.task or "multilabel"
    if args.task != "multilabel":  # these shape multilabel scores only: taken and ignored, they would mislead
        ignored = [flag for flag, value in (("--decisions", args.decisions), ("--thresholds-from", args.thresholds_from),
                                            ("--thresholds", args.thresholds), ("--save-decisions", args.save_decisions),
                                            ("--bootstrap", args.bootstrap), ("--per-tag", args.per_tag)) if value]
        if ignored:
            from musetag.errors import ConfigError

            raise ConfigError(f"{', '.join(ignored)}: multilabel scoring only; a {args.task} run's scores take none "
                              "of them, drop them")
    if len(args.predictions) > 1 or (args.out and args.out.lower().endswith(".csv")):
        return _many(args)
    pred = load_array(args.predictions[0], "predictions")
    gt = load_array(args.groundtruth, "ground truth")
    tags = _tags(args, pred.shape[1] if pred.ndim == 2 else None)
    if args.task == "multiclass":
        return _multiclass(args, pred, gt, tags)
    if args.task == "regression":
        return _regression(args, pred, gt, tags)
    kw = {}
    if args.decisions:
        kw["decisions"] = load_array(args.decisions, "decisions")
    elif args.thresholds_from:
        kw["thresholds_from"] = (load_array(args.thresholds_from[0], "validation predictions"),
                                 load_array(args.thresholds_from[1], "validation ground truth"))
    elif args.thresholds:
        from musetag.evaluate.submission import MEDIAEVAL_TAGS
        from musetag.evaluate.thresholds import thresholds_for

        # by name where the file and the columns have names (unnamed 56 columns: the MediaEval order)
        kw["thresholds"] = thresholds_for(args.thresholds, tags, official=MEDIAEVAL_TAGS)
    result = evaluate(pred, gt, tags=tags, **kw)
    table = result["table"]
    print(format_table(table), end="")
    if args.bootstrap:
        from musetag.evaluate.stats import bootstrap_ci

        from musetag.evaluate.stats import few_resamples_note

        ci = bootstrap_ci(gt, pred, n_resamples=args.bootstrap, seed=args.seed, method=args.ci_method,
                          progress=show_progress(args))
        note = few_resamples_note(args.bootstrap)
        if note:
            print(note, file=sys.stderr)
        result["bootstrap"] = ci
        for name, row in ci.items():
            print(f"{name}\t{row['value']:.6f}\t95% CI [{row['low']:.6f}, {row['high']:.6f}]  "
                  f"({args.bootstrap} resamples, {row['method']}; resample mean {row['mean']:.6f})")
    if args.per_tag:
        rows = sorted(result["per_tag"], key=lambda r: -(r["pr_auc"] if r["pr_auc"] is not None else -1))
        print(f"{'tag':40s} {'PR-AUC':>8s} {'ROC-AUC':>8s} {'pos':>5s}")
        for r in rows:
            pr = f"{r['pr_auc']:.4f}" if r["pr_auc"] is not None else "-"
            roc = f"{r['roc_auc']:.4f}" if r["roc_auc"] is not None else "-"
            print(f"{r['tag']:40s} {pr:>8s} {roc:>8s} {r['positives']:5d}")
    if args.out:
        write_table(table, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    if "thresholds" in result and args.out:
        th_path = Path(args.out).with_name(Path(args.out).stem + "_thresholds.txt")
        save_thresholds(result["thresholds"], th_path, tags)
    if args.save_decisions:
        import numpy as np

        if "thresholds" not in result:
            from musetag.errors import ConfigError

            raise ConfigError("--save-decisions needs --thresholds-from or --thresholds")
        from musetag.evaluate import apply_thresholds

        np.save(args.save_decisions, apply_thresholds(pred, result["thresholds"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


def _many(args) -> int:
    """Several runs against one ground truth: a table per run on stdout, one combined table in --out."""
    import csv

    from musetag.errors import ConfigError
    from musetag.evaluate import evaluate, format_table, load_array

    single_only = [flag for flag, value in (("--decisions", args.decisions), ("--thresholds-from", args.thresholds_from),
                                            ("--save-decisions", args.save_decisions), ("--bootstrap", args.bootstrap))
                   if value]
    if single_only and len(args.predictions) > 1:
        raise ConfigError(f"{', '.join(single_only)} apply to one prediction file: score the runs one at a time, "
                          "or use --thresholds FILE to apply the same thresholds to every run")
    if args.task != "multilabel":
        raise ConfigError(f"task {args.task}: one prediction file at a time, its table in a text file (several "
                          "files, or --out ending in .csv, make one table of multilabel runs); give --out a .tsv name")
    gt = load_array(args.groundtruth, "ground truth")
    tags = _tags(args, gt.shape[1] if gt.ndim == 2 else None)
    kw = {}
    if args.thresholds:
        from musetag.evaluate.submission import MEDIAEVAL_TAGS
        from musetag.evaluate.thresholds import thresholds_for

        kw["thresholds"] = thresholds_for(args.thresholds, tags, official=MEDIAEVAL_TAGS)
    elif args.decisions:
        kw["decisions"] = load_array(args.decisions, "decisions")
    elif args.thresholds_from:
        kw["thresholds_from"] = (load_array(args.thresholds_from[0], "validation predictions"),
                                 load_array(args.thresholds_from[1], "validation ground truth"))
    from musetag.errors import MusetagError

    results, rows, failed = {}, [], []
    for i, path in enumerate(args.predictions):
        try:
            pred = load_array(path, "predictions")  # the file not found names the path itself
            result = evaluate(pred, gt, tags=tags, **kw)
        except MusetagError as exc:  # one bad run: said, and the others still scored and written
            message = str(exc) if path in str(exc) else f"{path}: {exc}"
            print(f"musetag score: error: {message}", file=sys.stderr)
            failed.append(path)
            continue
        results[path] = result
        if len(args.predictions) > 1:
            print(f"# {path}")
        print(format_table(result["table"]), end="")
        if args.per_tag:
            for r in sorted(result["per_tag"], key=lambda r: -(r["pr_auc"] if r["pr_auc"] is not None else -1)):
                pr = f"{r['pr_auc']:.4f}" if r["pr_auc"] is not None else "-"
                print(f"  {r['tag']:38s} PR-AUC {pr}")
        if i < len(args.predictions) - 1:
            print()
        rows.append({"run": path, **{k: f"{v:.6f}" for k, v in result["table"].items()}})
    if not rows:
        raise ConfigError(f"none of the {len(failed)} prediction file(s) could be scored (see the errors above)")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        columns = ["run"] + [c for c in rows[0] if c != "run"]
        with out.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns, delimiter="," if out.suffix.lower() == ".csv" else "\t",
                                    lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {out} ({len(rows)} runs)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    if failed:
        print(f"musetag score: {len(failed)} of {len(args.predictions)} prediction file(s) could not be scored: "
              f"{', '.join(failed)}", file=sys.stderr)
        from musetag.exit_codes import EXIT_SOME_FAILED

        return EXIT_SOME_FAILED
    return 0


def _multiclass(args, pred, gt, tags) -> int:
    from musetag.evaluate import evaluate

    r = evaluate(pred, gt, task="multiclass", tags=tags)
    lines = [f"{k}\t{r[k]:.6f}" for k in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_macro")
             if r.get(k) is not None]
    print("\n".join(lines))
    width = max(len(c) for c in r["classes"])
    print("confusion matrix (rows: true, columns: predicted)")
    print(" " * (width + 1) + " ".join(f"{c[:6]:>6s}" for c in r["classes"]))
    for c, row in zip(r["classes"], r["confusion_matrix"]):
        print(f"{c:>{width}s} " + " ".join(f"{v:6d}" for v in row))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2), encoding="utf-8")
    return 0


def _regression(args, pred, gt, tags) -> int:
    from musetag.evaluate.regression import per_target, regression_scores

    names = list(tags) if tags is not None else [f"target{i}" for i in range(pred.shape[1] if pred.ndim == 2 else 1)]
    r = regression_scores(pred, gt, names=names)
    per = per_target(pred, gt)
    lines = [f"{k}\t{r[k]:.6f}" for k in ("r2_mean", "pearson_r_mean", "ccc_mean")]
    lines += [f"{n}\tR2 {a:.6f}\tr {b:.6f}\tCCC {c:.6f}" for n, a, b, c in zip(names, per["r2"], per["pearson_r"], per["ccc"])]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2), encoding="utf-8")
    return 0


def _tags(args, n_columns: int | None):
    """--tags, else tags.txt / a run's summary.json beside the predictions; without names, one line says so
    (only when per-tag output is asked for: thresholds, --per-tag, --json)."""
    from musetag.evaluate import load_tags, no_tag_names_note, tags_beside

    if args.tags:
        return load_tags(args.tags)
    tags, where = tags_beside(args.predictions, n_tags=n_columns)
    if tags is not None:
        print(f"tag names from {where}", file=sys.stderr)
    per_tag_output = (args.per_tag or args.json or (args.out and (args.thresholds_from or args.thresholds)))
    if tags is None and per_tag_output and args.task == "multilabel":
        print(f"musetag score: {no_tag_names_note(where)}", file=sys.stderr)
    return tags


def _check_inputs(args) -> None:
    """A training run folder given as PREDICTIONS (the natural first try) gets the command that scores it;
    a missing --groundtruth the error argparse used to give."""
    from musetag.errors import ConfigError

    for item in args.predictions:
        path = Path(item)
        if path.is_dir():
            preds = path / "predictions" if (path / "predictions").is_dir() else path
            if (preds / "test.npy").is_file():
                cmd = (f"musetag score {preds / 'test.npy'} --groundtruth {preds / 'test_targets.npy'}"
                       + (f" --thresholds-from {preds / 'validation.npy'} {preds / 'validation_targets.npy'}"
                          if (preds / "validation.npy").is_file() else ""))
                raise ConfigError(f"{item} is a folder; score a training run's test predictions with: {cmd}")
            raise ConfigError(f"{item} is a folder, not an NPY file of scores (tracks x tags)")
    if not args.groundtruth:
        raise ConfigError("the following arguments are required: --groundtruth/-g (the NPY file of the ground "
                          "truth; a training run writes RUN_DIR/predictions/test_targets.npy)")
