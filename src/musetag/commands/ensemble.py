"""``musetag ensemble``: combine several models' outputs, fitted on validation, scored on test."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from musetag.errors import ConfigError

log = logging.getLogger(__name__)

#: every file the command can write into --out (the stale ones of an earlier run are removed)
OUTPUTS = ("validation.npy", "test.npy", "ensemble.json", "results.tsv", "thresholds.txt")


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    p = subparsers.add_parser(
        "ensemble",
        help="ensemble model outputs (mean, rank/logit mean, optimised weights, greedy, per-tag, auto)",
        description=(
            "Fits an ensemble on validation predictions only and applies it to test. Methods: mean, rank_mean, "
            "logit_mean, weights (simplex weights optimised for validation PR-AUC-macro), greedy (Caruana 2004 "
            "forward selection with replacement, bagged), per_tag (best model per tag shrunk towards the mean), "
            "topk (mean of the k best models by validation score, k chosen by cross-validation inside validation), "
            "auto (the method with the best cross-validated validation score). Inputs are .npy files (one per "
            "model, same order for --validation and --test) or training run folders (--runs). Writes DIR/validation.npy, "
            "DIR/ensemble.json (weights and choices), with test predictions DIR/test.npy and, with --test-targets, "
            "DIR/results.tsv (official table, thresholds tuned on validation) and DIR/thresholds.txt."),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--validation", nargs="+", default=[], metavar="V.npy", help="validation predictions, one per model")
    p.add_argument("--test", nargs="+", default=[], metavar="T.npy", help="test predictions, same models, same order")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR",
                   help="training run folders (RUN_DIR/predictions/{validation,test}.npy and _targets.npy)")
    p.add_argument("--validation-targets", help="validation ground truth (.npy); default: from the first run folder")
    p.add_argument("--test-targets", help="test ground truth (.npy), only to score the result")
    p.add_argument("--groups", help="one group id (artist) per validation row, so CV folds never split an artist: "
                   "a text file with one id per line, or a split TSV with an ARTIST_ID column")
    p.add_argument("--method", "-m", default="auto",
                   choices=["auto", "mean", "rank_mean", "logit_mean", "weights", "greedy", "per_tag", "topk"])
    p.add_argument("--metric", default="pr_auc_macro",
                   choices=["pr_auc_macro", "roc_auc_macro", "pr_auc_micro", "roc_auc_micro"],
                   help="what --method auto maximises (its cross-validated CV column)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds inside validation")
    p.add_argument("--seed", type=int, default=0, help="seed of greedy's bagging")
    p.add_argument("--tags", help="tag list (one per line) recorded in ensemble.json and naming thresholds.txt; "
                   "default: tags.txt or the run's summary.json beside the predictions")
    p.add_argument("--out", "-o", required=True,
                   help="output folder; the outputs of an earlier ensemble run there (one that left ensemble.json) "
                   "that this run does not rewrite (" + ", ".join(OUTPUTS) + ") are removed, other files are left "
                   "alone")
    from musetag.commands import add_progress_arguments

    add_progress_arguments(p)
    p.set_defaults(func=run)


def _load_groups(path: str) -> list[str]:
    from musetag.errors import ConfigError
    from musetag.textfiles import read_text

    lines = read_text(path, "--groups file", error=ConfigError).splitlines()
    if lines and "ARTIST_ID" in lines[0].split("\t"):
        col = lines[0].split("\t").index("ARTIST_ID")
        return [ln.rstrip("\r").split("\t")[col] for ln in lines[1:] if ln.strip()]
    return [ln.strip() for ln in lines if ln.strip()]


def collect_inputs(args):
    """(names, validation arrays, test arrays or None, validation targets, test targets or None)."""
    names, val, test, sources = [], [], [], []
    vt_path = Path(args.validation_targets).resolve() if args.validation_targets else None
    val_files = [f for f in args.validation if vt_path is None or Path(f).resolve() != vt_path]
    if len(val_files) < len(args.validation):
        log.info("left the validation targets file out of the model list")
    for f in val_files:
        names.append(Path(f).stem)
        sources.append(Path(f).with_suffix(""))
        val.append(_load_scores(f, "validation predictions", args.method))
    tt_path = Path(args.test_targets).resolve() if args.test_targets else None
    test_files = [f for f in args.test if tt_path is None or Path(f).resolve() != tt_path]
    if len(test_files) < len(args.test):  # a glob of test/*.npy catches the ground truth too, as for validation
        log.info("left the test targets file out of the model list")
    args.test = list(test_files)
    for f in args.test:
        test.append(_load_scores(f, "test predictions", args.method))
    if args.test and len(args.test) != len(val_files):
        raise ConfigError(f"{len(val_files)} validation files but {len(args.test)} test files: give each model's "
                          "test predictions in the same order as its validation predictions")
    v_stems, t_stems = [Path(f).stem for f in val_files], [Path(f).stem for f in args.test]
    if args.test and v_stems != t_stems and sorted(v_stems) == sorted(t_stems):
        raise ConfigError(f"--test lists the same models as --validation in another order (validation: "
                          f"{', '.join(v_stems)}; test: {', '.join(t_stems)}): the weights would go to the wrong "
                          "models; give the test files in the validation order")
    for f, g in zip(val_files, args.test):
        if not _same_model(Path(f), Path(g)):
            log.warning("pairing %s with %s: the file names differ, check the order", f, g)
    vt = _load_targets(args.validation_targets, "--validation-targets") if args.validation_targets else None
    tt = _load_targets(args.test_targets, "--test-targets") if args.test_targets else None
    for run in args.runs:
        pred = Path(run) / "predictions"
        if not (pred / "validation.npy").exists():
            raise ConfigError(f"{run}: no predictions/validation.npy; is it a finished musetag training run folder?")
        names.append(Path(run).name)
        sources.append(Path(run))
        val.append(_load_scores(pred / "validation.npy", "validation predictions", args.method))
        if (pred / "test.npy").exists():
            test.append(_load_scores(pred / "test.npy", "test predictions", args.method))
            test_files.append(str(pred / "test.npy"))
        if vt is None and (pred / "validation_targets.npy").exists():
            vt = _load_targets(pred / "validation_targets.npy", "validation targets")
        if tt is None and (pred / "test_targets.npy").exists():
            tt = _load_targets(pred / "test_targets.npy", "test targets")
    from collections import Counter

    for src, count in Counter(Path(src).resolve() for src in sources).items():
        if count > 1:  # allowed (a weight), but rarely meant
            log.warning("%s is given %d times: it counts as %d models (that weight in a mean, %d draws in greedy)",
                        src, count, count, count)
    if len(val) < 2:
        raise ConfigError("an ensemble needs at least two models: give --validation files or --runs")
    if test and len(test) != len(val):
        raise ConfigError(f"{len(val)} models but only {len(test)} have test predictions")
    if vt is None:
        raise ConfigError("no validation targets: pass --validation-targets VT.npy")
    _check_shapes(test, test_files, "test predictions")
    return unique_names(names, sources), val, (test or None), vt, tt


def _load_scores(path, what: str, method: str):
    """One model's predictions; scores outside [0, 1] are warned about, naming the file (a mean or logit mean
    of logits and probabilities is meaningless: logit_mean clips them to [0, 1])."""
    import numpy as np

    from musetag.evaluate import load_array

    arr = load_array(path, what)
    if (method != "rank_mean" and arr.size and np.issubdtype(arr.dtype, np.number)
            and (arr.min() < 0 or arr.max() > 1)):
        log.warning("%s: scores outside [0, 1] (logits?): --method %s expects probabilities; apply a sigmoid "
                    "first, or use --method rank_mean, which only uses each model's ranking", path, method)
    return arr


def _load_targets(path, what: str):
    """Ground truth; ensemble needs 0/1 (multi-hot) targets, said with the file's name."""
    import numpy as np

    from musetag.evaluate import load_array

    arr = load_array(path, what)
    if arr.dtype != bool and np.issubdtype(arr.dtype, np.number) and arr.size and not np.isin(arr, (0, 1)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5].tolist()
        raise ConfigError(f"{what} {path} holds values other than 0 and 1 (e.g. {bad}): ensemble needs 0/1 "
                          "(multi-hot, tracks x tags) targets; pass the ground truth, not predictions or the "
                          "numeric targets of a regression run")
    return arr


def _check_shapes(arrays, paths, what: str) -> None:
    """Every test file scores the same tracks and tags as the first; errors name the file."""
    for arr, path in zip(arrays[1:], paths[1:]):
        if arr.shape != arrays[0].shape:
            hint = ("; it looks transposed (tags x tracks): save np.load(path).T instead"
                    if arr.shape == arrays[0].shape[::-1] else "")
            raise ConfigError(f"{what} {path} have shape {arr.shape}, but {paths[0]} has {arrays[0].shape}: "
                              f"every model must score the same tracks and tags in the same order{hint}")


def unique_names(names: list[str], sources: list[Path]) -> list[str]:
    """Model names for ensemble.json: the file stem (or run folder name), or, when stems repeat (the
    same file name in several folders), the path relative to the folders' common parent."""
    import os

    if len(set(names)) == len(names):
        return names
    paths = [os.path.abspath(p) for p in sources]
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    out = [os.path.relpath(p, root) for p in paths]
    seen: dict[str, int] = {}
    for i, name in enumerate(out):  # the same file given twice: number the repeats
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            out[i] = f"{name}#{seen[name]}"
    return out


def run(args) -> int:
    from musetag.commands import show_progress
    from musetag.evaluate import evaluate, load_tags, save_thresholds, write_table
    from musetag.evaluate.ensemble import _as_saved, ensemble, save_ensemble

    names, val, test, vt, tt = collect_inputs(args)
    groups = _load_groups(args.groups) if args.groups else None
    if args.tags:
        tags = load_tags(args.tags)
        n_cols = vt.shape[1] if vt.ndim == 2 else None
        if n_cols is not None and len(tags) != n_cols:  # before the fit, not after its files are written
            from musetag.errors import ConfigError

            raise ConfigError(f"--tags {args.tags}: {len(tags)} tag names for {n_cols} columns; give one name per "
                              "column of the predictions")
    else:
        from musetag.evaluate import no_tag_names_note, tags_beside

        tags, where = tags_beside([*args.validation, *args.runs], n_tags=vt.shape[1] if vt.ndim == 2 else None)
        if tags is None and tt is not None:  # thresholds.txt is written
            log.warning(no_tag_names_note(where))
        elif tags is not None:
            log.info("tag names from %s", where)
    result = ensemble(val, vt, test=test, test_targets=tt, method=args.method, names=names, folds=args.folds,
                      groups=groups, seed=args.seed, metric=args.metric,
                      progress=show_progress(args))
    written = ["validation.npy", *(["test.npy"] if result.test_predictions is not None else []), "ensemble.json",
               *(["results.tsv", "thresholds.txt"] if result.test_score is not None else [])]
    _remove_stale(Path(args.out), written)
    out = save_ensemble(result, args.out, tags=tags)
    if result.candidates:
        has_test = any("test" in row for row in result.candidates.values())
        head = f"{'method':12s} {'CV':>9s} {'val PR-M':>9s} {'val ROC-m':>9s} {'val PR-m':>9s}"
        if has_test:
            head += f" {'test PR-M':>9s} {'test ROC-M':>10s} {'test ROC-m':>10s} {'test PR-m':>9s}"
        print(head)
        for m, row in result.candidates.items():
            line = (f"{m:12s} {row['cv']:9.6f} {row['validation']:9.6f} {row['validation_roc_auc_micro']:9.6f} "
                    f"{row['validation_pr_auc_micro']:9.6f}")
            if "test" in row:
                line += (f" {row['test']:9.6f} {row['test_roc_auc_macro']:10.6f} {row['test_roc_auc_micro']:10.6f} "
                         f"{row['test_pr_auc_micro']:9.6f}")
            print(line + ("  <- chosen" if m == result.method else ""))
        groups_note = "artist-grouped folds" if groups is not None else "contiguous blocks of rows"
        print(f"CV: {args.metric} held out in {args.folds}-fold cross-validation inside validation ({groups_note}; "
              "each method fitted on the other folds), what auto maximises. AP on a fold of a few hundred tracks "
              "runs higher than on the whole set: compare CV values only with each other. PR/ROC = PR-AUC/ROC-AUC, "
              "-M macro, -m micro (all tags on one scale: a drop flags mixed calibrations); val = in-sample.")
    print(f"method {result.method} ({len(names)} models)")
    n_val = len(vt)
    if result.cv_score is not None:
        print(f"validation {args.metric} ({args.folds}-fold CV inside validation) {result.cv_score:.6f}  "
              f"[mean over held-out folds of ~{n_val // args.folds} tracks, each scored alone: AP on a small fold "
              "runs higher than on all tracks, so this ranks the methods and is not comparable with the next line]")
    print(f"validation PR-AUC-macro {result.validation_score:.6f}  [in-sample: fitted and scored on all {n_val} "
          "validation tracks]")
    if result.test_score is not None:
        print(f"test PR-AUC-macro {result.test_score:.6f}")
        # scored on the float32 predictions test.npy and validation.npy hold, as the printed score is
        scored = evaluate(_as_saved(result.test_predictions), tt, tags=tags,
                          thresholds_from=(_as_saved(result.validation_predictions), vt))
        write_table(scored["table"], out / "results.tsv")
        save_thresholds(scored["thresholds"], out / "thresholds.txt", tags)
    print(f"wrote {out}/{', '.join(written)}", file=sys.stderr)
    return 0


def _remove_stale(out: Path, written: list[str]) -> None:
    """Remove the outputs of an earlier ensemble run in ``out`` (it left ``ensemble.json``) that this run does not
    rewrite (only ``OUTPUTS``); files of the same names in a folder no ensemble wrote are left alone."""
    if not (out / "ensemble.json").is_file():
        return
    stale = [name for name in OUTPUTS if name not in written and (out / name).is_file()]
    for name in stale:
        (out / name).unlink()
    if stale:
        log.warning("removed %s from %s: an earlier ensemble run's outputs that this run does not write",
                    ", ".join(stale), out)


def _same_model(val: Path, test: Path) -> bool:
    """Whether ``val`` and ``test`` look like one model's two files: the same name (``val/a.npy``,
    ``test/a.npy``), or the same folder and names that differ only by the split (a training run's
    ``predictions/validation.npy`` and ``test.npy``, ``swa-validation.npy`` and ``swa-test.npy``)."""
    import re

    if val.stem == test.stem:
        return True
    split = re.compile(r"validation|valid|val|test")
    return val.resolve().parent == test.resolve().parent and split.sub("*", val.stem) == split.sub("*", test.stem)
