"""``musetag plot RESULTS.jsonl --out DIR``: per-track timelines (PNG) of ``musetag tag --segments``."""
from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    p = subparsers.add_parser(
        "plot",
        help="draw each tagged track's moods over time (PNG per track + index.html)",
        description=(
            "Reads the per-window scores written by `musetag tag --segments --out RESULTS.jsonl` (or .json) and "
            "draws, for every track, its most probable tags over time into DIR/NNN-name.png, with DIR/index.html "
            "listing the tracks (no internet needed to view it). "
            "Example: musetag tag --segments --out tags.jsonl music/ && musetag plot tags.jsonl --out timelines/"),
        formatter_class=HelpFormatter,
    )
    p.add_argument("results", metavar="RESULTS", help="results file of `musetag tag --segments` (.jsonl or .json)")
    p.add_argument("--out", "-o", required=True, help="output folder (created)")
    p.add_argument("--top", type=int, default=5, help="tags drawn per track (the most probable over the whole track)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musetag.tag.timeline import write_timelines

    index, count = write_timelines(args.results, args.out, top=args.top)
    print(f"{index}: {count} timelines", file=sys.stderr)
    print(index)
    return 0
