"""``musetag merge``: join the outputs of sharded ``musetag tag`` / ``musetag embed`` runs."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "merge",
        help="merge the outputs of sharded tag/embed runs (--shard I/N) into one file",
        description=(
            "Merge the outputs of `musetag tag ... --shard I/N` or `musetag embed ... --shard I/N` (one per "
            "shard, or per torchrun rank) into one file, sorted by track. A track found in two inputs with "
            "identical results is kept once; a track that failed in one shard and succeeded in another keeps "
            "its success; different results for one track stop the merge (the shards overlap) unless --keep "
            "says which to keep. Formats follow the extension: .csv, .tsv, .jsonl, .json, and embeddings "
            ".npy (with their .tracks.csv/.meta.json side files) or .parquet. Error lists "
            "(NAME.errors.csv) are merged too."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="PART", help="sharded output files (all of one format)")
    p.add_argument("--out", "-o", required=True, help="merged file (same extension as the inputs)")
    p.add_argument("--key", default=None, help="track column of tables (default: path, file, track, filename or id)")
    p.add_argument("--keep", choices=("error", "first", "last"), default="error",
                   help="when a track has different results in two inputs: stop (default), or keep the first/last")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musetag.tag.merge import merge_outputs

    report = merge_outputs(args.inputs, args.out, key=args.key, keep=args.keep)
    print(report.summary())
    return 0
