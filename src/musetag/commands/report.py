"""``musetag report``: an HTML page, PNGs and JSON for a run folder or a prediction file."""
from __future__ import annotations

import sys


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    p = subparsers.add_parser(
        "report",
        help="write a readable evaluation report (HTML + PNG + JSON)",
        description=(
            "Training curves (run folders), per-tag PR-AUC bars (validation beside test), PR curves of the best "
            "and worst tags, score distributions, and for multiclass tasks the confusion matrix. "
            "Examples: musetag report runs/bour-convs --out report/ ; "
            "musetag report test.npy --groundtruth gt.npy --validation val.npy val_gt.npy --tags tags.txt --out report/"),
        formatter_class=HelpFormatter,
    )
    p.add_argument("source", help="training run folder, or test predictions (.npy)")
    p.add_argument("--groundtruth", "-g", help="test ground truth (.npy) when SOURCE is a prediction file")
    p.add_argument("--validation", nargs=2, metavar=("VAL_PRED", "VAL_GT"),
                   help="validation predictions and ground truth (bars beside test, thresholds)")
    p.add_argument("--tags", help="tag or class names, one per line; default: tags.txt beside the predictions "
                   "(a run folder's own tags)")
    p.add_argument("--task", choices=["multilabel", "multiclass", "regression"],
                   help="default: from the run or the targets' shape (regression: numeric targets, R², r and CCC)")
    p.add_argument("--title", help="page title")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from musetag.evaluate import load_array, load_tags
    from musetag.evaluate.report import make_report

    validation = None
    if args.validation:
        validation = (load_array(args.validation[0], "validation predictions"),
                      load_array(args.validation[1], "validation ground truth"))
    gt = load_array(args.groundtruth, "ground truth") if args.groundtruth else None
    source = args.source
    from pathlib import Path

    tags = load_tags(args.tags) if args.tags else None
    if not Path(source).is_dir():
        source = load_array(source, "predictions")
        if args.task is None:  # a training run's predictions/ folder names its task, as a run folder does
            from musetag.evaluate import task_beside

            args.task = task_beside([args.source])[0]
        if tags is None and source.ndim == 2:  # a run folder names its tags itself
            from musetag.evaluate import no_tag_names_note, tags_beside

            tags, where = tags_beside([args.source], n_tags=source.shape[1])
            if tags is None:
                print(f"musetag report: {no_tag_names_note(where)}", file=sys.stderr)
    page = make_report(source, args.out, groundtruth=gt, validation=validation,
                       tags=tags, task=args.task, title=args.title)
    print(f"wrote {page}", file=sys.stderr)
    print(page)
    return 0
