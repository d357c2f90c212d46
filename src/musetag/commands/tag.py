"""``musetag tag [MODEL] PATH...``: tag audio files and folders into a CSV/JSON/JSONL results file."""
from __future__ import annotations

import argparse
import os
import sys

from musetag.exit_codes import EXIT_STATUS_HELP, exit_status


#: memory a decoding worker may need at its peak (a forked process running the network on a long
#: file's windows; bench/memory.py measures ~80 MB PSS per worker with simplecnn, 543 MB was seen
#: with larger models) and what the main process keeps for itself
WORKER_MEMORY_MB = 600
MAIN_MEMORY_MB = 1024


def available_memory_mb() -> float | None:
    """``MemAvailable`` from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_workers() -> int:
    """The default ``--workers``: one decoding process per core (at most 8), fewer when the memory
    available now would not hold them (:data:`WORKER_MEMORY_MB` each beside the main process)."""
    workers = max(1, min(8, os.cpu_count() or 1))
    avail = available_memory_mb()
    if avail is not None:
        workers = max(1, min(workers, int((avail - MAIN_MEMORY_MB) // WORKER_MEMORY_MB)))
    return workers


def positive_minutes(text: str) -> float:
    """argparse type of ``--stream-minutes``: a number of minutes above 0 (``inf``: never decode in blocks)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of minutes: give more than 0, e.g. 10")
    return value


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    p = subparsers.add_parser(
        "tag",
        help="tag audio files and folders with a model package",
        description=(
            "Tag audio files with a model package or a pretrained model (default: mtg-jamendo-baseline, "
            "real mood/theme tags; `musetag models --pretrained` lists the others). Decoding runs in worker processes, segments go "
            "through the network in batches and are averaged as in training. Each file gets one row "
            "with a status column (ok, or the error message), the top tags with probabilities, the "
            "tags decided present and the full score vector. A failing file never stops the run; "
            "running again with the same --out skips files already done; the output is never torn "
            "by a kill. Files longer than --stream-minutes are decoded in blocks with bounded memory. "
            "A file shorter than the model's input window, silent (peak at or below -60 dBFS) or with "
            "damaged data the decoder skipped is tagged but flagged in its row's warnings column."
        ),
        epilog=EXIT_STATUS_HELP,
        formatter_class=HelpFormatter,
    )
    p.set_defaults(extra_positionals="items")
    p.add_argument("items", metavar="[MODEL] PATH", nargs="+",
                   help="optionally a model first (package folder or archive from `musetag package`, or a pretrained "
                        "name from `musetag models --pretrained`), then audio files and/or folders. Without a model "
                        "the default pretrained mood model is used: mtg-jamendo-baseline (56 MTG-Jamendo "
                        "mood/theme tags), pulled into the cache on first use")
    p.add_argument("--model", "-m", default=None, metavar="MODEL",
                   help="the model, when the first PATH could be mistaken for one")
    p.add_argument("--recursive", "-r", action="store_true", help="also tag files in subfolders")
    p.add_argument("--out", "-o", default=None,
                   help="results file (.csv, .json or .jsonl; .parquet with --engine ray); without it, one line per "
                        "file is printed")
    p.add_argument("--top-k", type=int, default=5, help="how many top tags to list per file")
    p.add_argument("--threshold", default=None,
                   help="'tuned' (the package's per-tag thresholds: the default model carries the ones its "
                        "authors published) or a probability; a tag is decided when its score is above it "
                        "(score > threshold); default: tuned when the package has them, else 0.5")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (0 = decode in this process); default: one per core (at most 8), "
                        f"fewer when the available memory would not hold {WORKER_MEMORY_MB} MB per worker beside "
                        f"{MAIN_MEMORY_MB} MB for the main process")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="onnx: onnxruntime runs the network's ONNX graph (exported once into the cache on first use, "
                        "or `musetag export`) and numpy computes the features, so PyTorch is never imported (fast "
                        "start); torch: PyTorch for both (a GPU, or to check the exported path); auto: onnx for a "
                        "plain model on the CPU when onnxruntime is installed, else torch")
    p.add_argument("--batch-size", type=int, default=32, help="segments per network batch")
    p.add_argument("--retry-errors", action="store_true", help="tag again files whose earlier row is an error")
    p.add_argument("--stream-minutes", type=positive_minutes, default=10.0,
                   help="files longer than this are decoded in blocks (bounded memory)")
    p.add_argument("--segments", action="store_true",
                   help="also write every window's scores with its start and end seconds (a 'segments' list per "
                        "row: .jsonl or .json only, CSV stays one row per file); `musetag plot` draws them")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="tag only part I of N (1-based) of the file list, chosen by a stable hash of each file's "
                        "path relative to its folder, so N machines or array-job tasks split a catalogue without "
                        "overlap; join the outputs with `musetag merge`. Under torchrun each process takes its "
                        "share (and its own GPU) and writes OUT with a .rank-R-of-W suffix")
    from musetag.commands import add_progress_arguments, add_ray_arguments

    add_ray_arguments(p)
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musetag.commands import show_progress, split_model_and_paths
    from musetag.errors import ConfigError

    if args.top_k < 0:
        raise ConfigError(f"--top-k must be >= 0, got {args.top_k}")
    if args.segments:
        from musetag.tag.writers import check_segments_output

        check_segments_output(args.out, getattr(args, "engine", "local"))
    if getattr(args, "engine", "local") == "ray":  # before the local engine's imports (torch)
        from musetag.commands._ray_cli import tag_command

        return tag_command(args)
    from musetag.tag.batch import tag_files
    from musetag.inference.tagger import Tagger

    if args.workers is None:
        args.workers = default_workers()
    args.model, args.paths = split_model_and_paths(args.items, args.model)

    if args.top_k < 0:
        raise ConfigError(f"--top-k must be >= 0, got {args.top_k}")
    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    from musetag.commands import empty_shard
    from musetag.tag.shard import collect_shard_files, distributed_shard, parse_shard, shard_output_path, torchrun_device

    shard = distributed_shard(parse_shard(args.shard))
    if args.out is not None:
        args.out = str(shard_output_path(args.out, shard))
    tagger = Tagger.from_package(
        args.model,
        backend=args.backend,
        threshold=args.threshold,
        batch_size=args.batch_size,
        stream_seconds=args.stream_minutes * 60.0,
        segments=args.segments,
        **({"device": torchrun_device()} if args.backend != "onnx" else {}),
    )
    if tagger.backend == "torch":
        import torch

        # the decoding workers use one core each; the network gets the rest (oversubscribed OpenMP
        # threads slow small tensors down many times)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - args.workers))
    untuned = args.threshold is None and tagger.task == "multilabel" and tagger.package.thresholds is None
    note = (f"note: {args.model} has no tuned per-tag thresholds, so 'decided' lists the tags scoring above 0.5 "
            "(--threshold P sets another level; the ranking is in the scores)")
    if args.out is None:
        files = collect_shard_files(args.paths, shard, recursive=args.recursive)
        if untuned:
            print(note, file=sys.stderr)
        failed = 0
        # one file: no worker processes to start (they would only wait for the first file)
        for result in tagger.tag_many(files, workers=args.workers if len(files) > 1 else 0):
            if result.ok:
                flags = "".join(f"\twarning: {w}" for w in result.warnings)
                if result.task == "regression":
                    values = ", ".join(f"{t} {v:.3f}" for t, v in result.scores.items())
                    print(f"{result.path}\tok\tvalues: {values}{flags}")
                    continue
                tops = ", ".join(f"{t} {s:.3f}" for t, s in result.top(args.top_k))
                decided = ", ".join(result.decisions) or "(none)"
                print(f"{result.path}\tok\t{tops}\tdecided: {decided}{flags}")
            else:
                failed += 1
                print(f"{result.path}\terror\t{result.status}")
        if not files and empty_shard(args, shard):
            return 0
        return exit_status(len(files) - failed, failed)
    summary = tag_files(
        tagger,
        args.paths,
        args.out,
        recursive=args.recursive,
        workers=args.workers,
        top_k=args.top_k,
        retry_errors=args.retry_errors,
        progress=show_progress(args),
        shard=shard,
    )
    print(summary.line(args.out), file=sys.stderr)
    if untuned and summary.total:  # with --out too, once the run is done: its decisions column says the same
        print(note.replace("'decided' lists", "the decisions column lists"), file=sys.stderr)
    if not summary.total:
        if empty_shard(args, shard):
            return 0
        print(f"{args.out}: no audio files found in {' '.join(args.paths)}", file=sys.stderr)
    return summary.exit_status
