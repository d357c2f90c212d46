"""``musetag compare``: is system A really better than system B on this test set?"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    p = subparsers.add_parser(
        "compare",
        help="paired bootstrap test between two prediction files",
        description=("Scores A and B on the same bootstrap resamples of the test tracks and reports the "
                     "difference, its confidence interval and the p-value that A is not better than B. "
                     "Example: musetag compare A.npy B.npy --groundtruth groundtruth.npy"),
        formatter_class=HelpFormatter,
    )
    p.add_argument("a", help="NPY predictions of system A (tracks x tags)")
    p.add_argument("b", help="NPY predictions of system B")
    p.add_argument("--groundtruth", "-g", required=True, help="NPY multi-hot ground truth")
    p.add_argument("--metric", default="PR-AUC-macro", choices=["PR-AUC-macro", "ROC-AUC-macro"])
    p.add_argument("--resamples", "-n", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the result as JSON here")
    from musetag.commands import add_progress_arguments

    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from musetag.commands import show_progress
    from musetag.evaluate import load_array
    from musetag.errors import ConfigError
    from musetag.evaluate.stats import few_resamples_note, paired_bootstrap
    from musetag.outputs import check_writable

    if args.resamples < 1:  # named by its flag (the library's check speaks of n_resamples)
        raise ConfigError(f"--resamples must be at least 1, got {args.resamples} (1000 is the usual choice)")
    if args.json:  # before the resampling, not after the result is printed
        check_writable(args.json, flag="--json")
    gt = load_array(args.groundtruth, "ground truth")
    a = load_array(args.a, "system A predictions")
    b = load_array(args.b, "system B predictions")
    r = paired_bootstrap(gt, a, b, n_resamples=args.resamples, seed=args.seed, metric=args.metric,
                         progress=show_progress(args))
    print(f"A {args.metric}\t{r['a']:.6f}\t({args.a})")
    print(f"B {args.metric}\t{r['b']:.6f}\t({args.b})")
    print(f"A - B\t{r['difference']:+.6f}\t95% CI [{r['low']:+.6f}, {r['high']:+.6f}]")
    note = few_resamples_note(args.resamples)
    if note:
        print(note, file=sys.stderr)
    print(f"p-value (H1: A > B)\t{r['p_value']:.4f}\ttwo-sided {r['p_value_two_sided']:.4f}\t"
          f"({r['n_resamples']} paired resamples)")
    verdict = ("A is better than B" if r["p_value"] < 0.05 else
               "B is better than A" if r["p_value_two_sided"] < 0.05 and r["difference"] < 0 else
               "no significant difference")
    print(f"verdict (alpha 0.05)\t{verdict}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=2), encoding="utf-8")
    return 0
