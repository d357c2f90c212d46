"""``musetag embed MODEL PATH... --out embeddings.npy|.parquet``: one vector per track."""
from __future__ import annotations

import argparse
import os
import sys

from musetag.exit_codes import EXIT_STATUS_HELP


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    p = subparsers.add_parser(
        "embed",
        help="write one embedding vector per track (for similarity search and downstream models)",
        description=(
            "Embed audio files with a model package: the pooled penultimate layer (forward_features) on "
            "the tagger's segments, averaged over the track. Files are listed, decoded and segmented as "
            "`musetag tag` does; a failing file is recorded in NAME.errors.csv and never stops the run; "
            "running again with the same --out resumes (finished tracks are saved to OUT.partial/ as the "
            "run goes). --shard I/N keeps one part of the catalogue (merge the parts with `musetag "
            "merge`); under torchrun each process embeds its share on its own GPU."
        ),
        epilog=EXIT_STATUS_HELP.replace("tagged", "embedded"),
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="model package folder or archive (from `musetag package`), or a "
                   "pretrained name (`musetag models --pretrained`; pulled into the cache on first use); NAME@layers=-2,-1,pool=mean,std: "
                   "statistics of those layers over all frames of all windows instead of the penultimate mean")
    p.add_argument("paths", metavar="PATH", nargs="+", help="audio files and/or folders")
    p.add_argument("--out", "-o", required=True,
                   help="embeddings file: .npy (+ NAME.tracks.csv, NAME.meta.json) or .parquet")
    p.add_argument("--with-scores", action="store_true",
                   help="append each track's tag scores (as `musetag tag` gives them: same windows, the package's "
                        "aggregation) after the embedding; the metadata names the score columns")
    p.add_argument("--windows", choices=("fit", "upstream"), default="fit",
                   help="fit (default): consecutive windows overlap by at most half their length, as `prepare` of an "
                        "embed: preset; upstream: the model's own segment rule, as `musetag tag` cuts")
    p.add_argument("--recursive", "-r", action="store_true", help="also embed files in subfolders")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="embed only part I of N (1-based) of the file list; deterministic by relative path")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (0 = decode in this process); default: one per core but one, at most 4")
    p.add_argument("--batch-size", type=int, default=32, help="segments per network batch")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="torch",
                   help="network runtime: torch (default: PyTorch, the numbers `musetag prepare` stores for "
                        "`embed:` presets, so files and caches are interchangeable); onnx reads the `embedding` "
                        "output of the exported graph on onnxruntime with numpy features (within ~1e-4 of torch; "
                        "exported once into the cache, or `musetag export`); auto: onnx for a plain model on the "
                        "CPU when onnxruntime is installed, else torch")
    p.add_argument("--device", default=None, help="torch device (default: cuda:LOCAL_RANK under torchrun, else cpu)")
    p.add_argument("--retry-errors", action="store_true", help="embed again files that failed before")
    p.add_argument("--restart", action="store_true", help="ignore earlier partial results and start over")
    from musetag.commands import add_progress_arguments, add_ray_arguments

    add_ray_arguments(p)
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "engine", "local") == "ray":
        if args.with_scores:
            from musetag.errors import ConfigError

            raise ConfigError("--with-scores runs with the local engine only; drop --engine ray (or --with-scores)")
        if args.windows != "fit":
            from musetag.errors import ConfigError

            raise ConfigError("--windows upstream runs with the local engine only (the Ray engine cuts fit windows); "
                              "drop --engine ray (or --windows upstream)")
        from musetag.commands._ray_cli import embed_command

        return embed_command(args)
    from musetag.commands import show_progress
    from musetag.tag.embed_files import embed_files
    from musetag.tag.shard import distributed_shard, parse_shard, shard_output_path, torchrun_device

    shard = distributed_shard(parse_shard(args.shard))
    out = shard_output_path(args.out, shard)
    report = embed_files(
        args.model, args.paths, out, recursive=args.recursive, shard=shard, workers=max(1, min(4, (os.cpu_count() or 2) - 1)) if args.workers is None else args.workers,
        batch_size=args.batch_size, device=args.device or torchrun_device(), backend=args.backend,
        retry_errors=args.retry_errors,
        resume=not args.restart, progress=show_progress(args), scores=args.with_scores, windows=args.windows,
    )
    print(report.summary(), file=sys.stderr)
    if not report.total:
        from musetag.commands import empty_shard

        if empty_shard(args, shard):
            return 0
    return report.exit_status
