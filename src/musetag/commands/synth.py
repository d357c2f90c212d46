"""``musetag synth``: write a synthetic labelled music corpus (audio files + manifest + dataset TOML)."""
from __future__ import annotations


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter

    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic labelled music corpus for trying musetag",
        description=(
            "Render short clips whose tags are their musical properties (tempo fast/slow, major/minor mode, "
            "bright/dark timbre, drums, dense texture; or four genres with --task multiclass) and write them as "
            "audio files with manifest.csv and dataset.toml, ready for `musetag prepare --data DIR/dataset.toml`."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--n-clips", type=int, default=200, help="number of clips")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--task", choices=("multilabel", "multiclass"), default="multilabel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--format", choices=("flac", "wav"), default="flac", help="audio file format")
    parser.add_argument("--preset", default="jamendo96", help="feature preset written into dataset.toml")
    from musetag.commands import add_progress_arguments

    add_progress_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from musetag.commands import check_corpus_flags, show_progress
    from musetag.data.synth import make_corpus

    check_corpus_flags(args.n_clips, args.seconds, "--n-clips")
    manifest = make_corpus(args.out, n_clips=args.n_clips, seconds=args.seconds, seed=args.seed, task=args.task,
                           sample_rate=args.sample_rate, audio_format=args.format, preset=args.preset,
                           progress=show_progress(args))
    print(f"manifest: {manifest}")
    print(f"dataset config: {manifest.parent / 'dataset.toml'}")
    return 0
