"""``musetag prepare``: decode every track once and store its features in a resumable cache."""
from __future__ import annotations


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    parser = subparsers.add_parser(
        "prepare",
        help="compute a dataset's features once into a resumable cache",
        description=(
            "Decode each track of the dataset once, compute the preset's features and store one .npy per "
            "audio file (readable with mmap) plus index.json, stats.json (mean/std over the training split) and "
            "failures.csv. Interrupted runs resume where they stopped. Arrays are keyed by audio file (path, "
            "size, mtime) and feature settings, so another dataset TOML over the same files decodes nothing. "
            "Official MTG-Jamendo .npy mel-spectrograms (paths.melspec_root) are used in place, without audio. "
            "Exit status: 0 every track is cached; 3 some tracks failed (listed in failures.csv; the others are "
            "cached, and `musetag train` refuses the dataset until they are fixed or removed); 2 bad arguments."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--data", required=True, metavar="DATASET.toml", help="dataset config (reader, paths, preset, task)")
    parser.add_argument("--out", metavar="CACHE_DIR", help="cache folder (default: the config's cache = ..., else .musetag-cache/<name>-<features hash> "
                        "beside the TOML: where `musetag train` looks)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores; 0: no subprocesses)")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="storage precision")
    parser.add_argument("--from-audio", action="store_true", help="decode audio even where official features exist")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing cache in CACHE_DIR and recompute its arrays")
    from musetag.commands import add_progress_arguments

    add_progress_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from musetag.commands import show_progress
    from musetag.data.cache import prepare

    result = prepare(args.data, args.out, workers=args.workers, dtype=args.dtype, progress=show_progress(args),
                     from_audio=args.from_audio, overwrite=args.overwrite)
    stats = result.stats
    print(f"cache: {result.out_dir}")
    print(f"tracks: {result.n_cached} cached of {result.n_tracks} ({result.n_computed} computed now, "
          f"{result.n_resumed} already there) in {result.seconds:.1f} s")
    print(f"stats ({stats['split']} split, {stats['tracks']} tracks): mean {stats['mean']:.4f} std {stats['std']:.4f}")
    if result.failures:
        print(f"failed: {len(result.failures)} track(s), listed in {result.report_path}")
        for row in result.failures[:5]:
            print(f"  {row['id']}: {row['error']}")
        print("fix or remove them before `musetag train` (it refuses a dataset with failed tracks)")
        from musetag.exit_codes import EXIT_SOME_FAILED

        return EXIT_SOME_FAILED  # `prepare && train` stops here, where the message is, not at train
    return 0
