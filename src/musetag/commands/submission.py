"""``musetag submission``: a validated MediaEval submission from predictions or a run folder."""
from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    p = subparsers.add_parser(
        "submission",
        help="write a MediaEval submission (predictions.npy + decisions.npy, 4231 x 56, official order)",
        description=(
            "From a training run folder (thresholds tuned on its validation predictions) or a test prediction "
            "file plus --thresholds-from VAL_PRED.npy VAL_GT.npy (or --decisions / --thresholds). The result is "
            "checked: 4231 x 56, float scores, boolean decisions, official tag order. "
            "Example: musetag submission runs/bour-convs --out submission/"),
        formatter_class=HelpFormatter,
    )
    p.add_argument("source", help="run folder, or test predictions (.npy, tracks x tags)")
    p.add_argument("--out", "-o", required=True, help="submission folder to write")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--thresholds-from", nargs=2, metavar=("VAL_PRED", "VAL_GT"),
                     help="tune per-tag F1-optimal thresholds on validation predictions and ground truth")
    src.add_argument("--decisions", help="boolean decisions (.npy) to submit as they are")
    src.add_argument("--thresholds", help="thresholds file (tag<TAB>value per line)")
    p.add_argument("--tags", help="tag list naming the columns when not in the official order (one per line)")
    p.add_argument("--rows", type=int, default=4231, help="expected number of test tracks")
    p.add_argument("--groundtruth", help="also score the submission against this ground truth (.npy)")
    p.set_defaults(func=run)


def run(args) -> int:
    from musetag.errors import ConfigError
    from musetag.evaluate import evaluate, format_table, load_array, load_tags
    from musetag.evaluate.submission import make_submission, submission_from_run

    from musetag.outputs import check_writable

    out_dir = check_writable(args.out, folder=True)
    if out_dir.is_dir() and any(out_dir.iterdir()):  # as ensemble and train do: never mixed into other files
        raise ConfigError(f"--out {out_dir} exists and is not empty; write the submission to a new folder (or delete "
                          "that one first)")
    src = Path(args.source)
    tags = load_tags(args.tags) if args.tags else None
    if src.is_dir():
        if args.decisions or args.thresholds or args.thresholds_from:
            raise ConfigError("a run folder brings its own validation predictions; drop --decisions/--thresholds")
        out = submission_from_run(src, args.out, tags=tags, n_tracks=args.rows)
    else:
        pred = load_array(src, "test predictions")
        kw = {}
        if args.thresholds_from:
            kw["validation"] = (load_array(args.thresholds_from[0], "validation predictions"),
                                load_array(args.thresholds_from[1], "validation ground truth"))
        elif args.decisions:
            kw["decisions"] = load_array(args.decisions, "decisions")
        elif args.thresholds:
            from musetag.evaluate.submission import MEDIAEVAL_TAGS
            from musetag.evaluate.thresholds import thresholds_for

            kw["thresholds"] = thresholds_for(args.thresholds, tags or list(MEDIAEVAL_TAGS))  # the columns' order
        else:
            raise ConfigError("decisions need thresholds: pass --thresholds-from VAL_PRED.npy VAL_GT.npy "
                              "(tuned on validation, as MediaEval asks), --thresholds or --decisions")
        out = make_submission(pred, args.out, tags=tags, n_tracks=args.rows, source=str(src), **kw)
    print(f"wrote a valid submission to {out}: predictions.npy, decisions.npy", file=sys.stderr)
    if args.groundtruth:
        import numpy as np

        r = evaluate(np.load(out / "predictions.npy"), load_array(args.groundtruth, "ground truth"),
                     decisions=np.load(out / "decisions.npy"))
        print(format_table(r["table"]), end="")
    return 0
