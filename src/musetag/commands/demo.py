"""``musetag demo``: the main job end to end on a synthetic corpus (what ``make demo`` runs)."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="generate a corpus, train, evaluate, package and tag: the whole pipeline in one command",
        description=(
            "Generate a labelled synthetic corpus (tags that really depend on tempo, mode, timbre, drums...), "
            "prepare its features, train the `demo` recipe (under a minute on 2 CPU cores), evaluate it "
            "(PR-AUC / ROC-AUC, HTML report with plots), package the model at OUT/model and tag a few new clips."
        ),
    )
    p.add_argument("--out", default="demo-output", help="folder the demo writes (default: demo-output)")
    p.add_argument("--clips", type=int, default=200, help="clips in the synthetic corpus (default 200)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip (default 10 s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    from musetag.commands import add_progress_arguments

    add_progress_arguments(p)
    p.add_argument("--real-audio", default=None, metavar="DIR",
                   help="a folder of real songs for the last stage (tagged with the pretrained mood model)")
    p.add_argument("--pretrained", default=None, metavar="NAME",
                   help="pretrained model of the last stage (default: mtg-jamendo-baseline)")
    p.set_defaults(func=run)


def run(args) -> int:
    from musetag.commands import check_corpus_flags, show_progress
    from musetag.commands._demo_run import run_demo
    from musetag.errors import ConfigError

    check_corpus_flags(args.clips, args.seconds, "--clips")  # before any stage runs
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs} (leave it out for the recipe's own)")

    run_demo(args.out, n_clips=args.clips, seconds=args.seconds, seed=args.seed, epochs=args.epochs,
             progress=show_progress(args), real_audio=args.real_audio, pretrained=args.pretrained)
    return 0
