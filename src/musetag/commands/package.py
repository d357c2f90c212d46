"""``musetag package RUN_DIR --out MODEL``: turn a training run into a self-describing model package."""
from __future__ import annotations

import argparse
import os

from musetag.commands import UNSAFE_PICKLE_HELP


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    p = subparsers.add_parser(
        "package",
        help="package a training run's checkpoint for tagging",
        description=(
            "Write a model package: a folder (or .zip/.tar/.tar.gz archive when --out ends so) with "
            "model.safetensors and musetag.json (model, feature config with normalisation, tags, "
            "thresholds, segmenting, musetag version, weights checksum). Use it with `musetag tag`, "
            "`musetag serve`, `musetag export` or musetag.Tagger.from_package()."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `musetag train` (or a checkpoint .pt)")
    p.add_argument("--out", required=True, metavar="MODEL", help="package folder, or archive path (.zip/.tar/.tar.gz)")
    p.add_argument(
        "--checkpoint",
        default="auto",
        choices=("auto", "swa", "best", "last"),
        help="which checkpoint: auto = the one the run chose on validation (its summary.json: the final model "
        "of its log), else swa, else best, else last",
    )
    p.add_argument("--segment-seconds", type=float, default=None, help="override the segment length used for tagging")
    p.add_argument("--hop-seconds", type=float, default=None, help="override the hop between segments")
    p.add_argument("--aggregation", choices=("mean", "mean_logits", "max"), default=None,
                   help="override how segment scores are combined (default: as in training)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--allow-unsafe-pickle", action="store_true", help=UNSAFE_PICKLE_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musetag.inference.package import load_package
    from musetag.tag.package_from_run import create_package

    if args.allow_unsafe_pickle:
        from musetag.models.safe_load import allow_unsafe_pickle

        allow_unsafe_pickle()

    from musetag.outputs import check_writable
    from musetag.inference.package import ARCHIVE_SUFFIXES

    if not (args.force and os.path.exists(args.out)):
        check_writable(args.out, folder=not str(args.out).lower().endswith(ARCHIVE_SUFFIXES))
    out = create_package(
        args.run_dir,
        args.out,
        checkpoint=args.checkpoint,
        segment_seconds=args.segment_seconds,
        hop_seconds=args.hop_seconds,
        aggregation=args.aggregation,
        overwrite=args.force,
    )
    pkg = load_package(out)  # verify what was written
    _note_unfinished(args.run_dir, pkg.source.get("checkpoint"))
    if args.checkpoint == "auto":
        _note_final_not_packaged(args.run_dir, pkg.source.get("checkpoint"))
    from musetag.inference.runners import prepare_onnx

    graph = prepare_onnx(pkg)  # the graph `musetag tag` runs by default, exported now rather than on first use
    print(
        f"wrote {out}: {pkg.model_name}, {pkg.outputs_phrase} ({pkg.task}), checkpoint {pkg.source.get('checkpoint')}, "
        f"sha256 {pkg.sha256[:12]}" + (f"; ONNX graph {graph}" if graph is not None else "")
    )
    return 0


def _note_unfinished(run_dir: str, checkpoint) -> None:
    """One line on stderr when RUN_DIR is a training run that has not finished (no summary.json): its package
    is a checkpoint of a run still in progress or interrupted, without the final choice or tuned thresholds."""
    import sys
    from pathlib import Path

    run = Path(run_dir)
    if not run.is_dir() or (run / "summary.json").exists() or not (run / "checkpoints" / "last.pt").exists():
        return
    done = ""
    try:
        done = f" ({len((run / 'metrics.jsonl').read_text(encoding='utf-8').splitlines())} epochs trained)"
    except OSError:
        pass
    print(f"note: {run} has not finished training{done}: packaged its {checkpoint}, without the final model chosen on "
          f"validation or tuned thresholds; finish the run with `musetag train --resume {run}` and package it again",
          file=sys.stderr)


_ONE_NETWORK = ("best", "last", "swa")  # finals a package of one network holds


def _note_final_not_packaged(run_dir: str, checkpoint) -> None:
    """One line on stderr when the run's final model (the one its summary.json scores) is an ensemble that
    a package of one network cannot hold: snapshot averaging (Koutini 2019), per-class early stopping
    (AMLAG 2019) or a co-teaching pair mixed by ``coteaching.weights`` (SELAB-HCMUS 2021 Run 4)."""
    import json
    import sys
    import tomllib
    from pathlib import Path

    run = Path(run_dir)
    try:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(summary, dict):
        return
    final = summary.get("final")
    what = None
    if isinstance(final, str) and final not in _ONE_NETWORK:
        what = {"snapshots": "the average of its snapshots", "per_class": "each tag's output from its own best epoch"
                }.get(final, f"the {final!r} ensemble")
    else:
        try:
            cot = tomllib.loads((run / "config.toml").read_text(encoding="utf-8")).get("coteaching") or {}
        except (OSError, ValueError):
            cot = {}
        weights = cot.get("weights") or [1.0, 0.0]
        if cot.get("enabled") and len(weights) > 1 and float(weights[1]) != 0.0:
            what = (f"the co-teaching pair mixed {float(weights[0]):g} / {float(weights[1]):g} "
                    f"(coteaching.weights)")
    if what is None:
        return
    metric = summary.get("metric", "score")
    cand = summary.get("candidates") or {}
    name = Path(str(checkpoint or "")).stem
    # co-teaching: the candidates' scores are the pair's, not the packaged network's alone
    ours = None if final in _ONE_NETWORK else ((cand.get(name) or {}).get("validation") or {}).get(metric)
    theirs = (summary.get("validation") or {}).get(metric)
    scores = (f" (validation {metric}: final {theirs:.4f}, packaged {ours:.4f})"
              if isinstance(theirs, (int, float)) and isinstance(ours, (int, float)) else "")
    print(f"note: {run}'s final model is {what}, which one package cannot hold: packaged the single network "
          f"{checkpoint}, so its tags will not match the run's predictions/ and summary.json scores{scores}; "
          f"for a package that matches them, train with a single-network final (final = best, last or swa)",
          file=sys.stderr)

