"""``musetag features``: compute a feature preset for audio files into ``.npy`` files."""
from __future__ import annotations

import argparse
import os
import sys



def _shapes_help() -> str:
    from musetag.features.presets import PRESETS

    lines = []
    for name in sorted(PRESETS):
        cfg = PRESETS[name]
        lines.append(f"  {name:<12} {cfg.output_shape:<20} {cfg.describe()}")
    return "\n".join(lines)


class _LazyEpilogFormatter(argparse.HelpFormatter):
    """Builds a callable epilog only when help is printed (the presets module costs start-up time) and prints it
    as it is (a table); the description is wrapped to the terminal like every other command's."""

    def add_text(self, text):
        if callable(text):
            table = text()
            self._add_item(lambda: table + "\n", [])
        else:
            super().add_text(text)


def _preset_name(text: str) -> str:
    from musetag.features.presets import PRESETS

    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(sorted(PRESETS))})")
    return text


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def register(subparsers) -> None:
    from musetag.commands import non_negative_int

    parser = subparsers.add_parser(
        "features",
        help="compute a feature preset (mel-spectrograms, waveforms) for audio files",
        description=(
            "Decode each audio file (WAV, FLAC, MP3, OGG; M4A/AAC through ffmpeg when installed), resample it and "
            "compute the preset's features into one .npy file per input, float32. Directories are searched "
            "recursively and their layout is mirrored below --out. Files that cannot be decoded are reported and "
            "skipped. Exit status: 0 every file was processed; 3 some files failed (the others are written); 4 none "
            "could be processed; 2 invalid arguments."
        ),
        epilog=lambda: "presets and the shape of each .npy file:\n" + _shapes_help(),
        formatter_class=_LazyEpilogFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="AUDIO_OR_DIR", help="audio files and/or directories")
    parser.add_argument(
        "--preset", required=True, type=_preset_name, metavar="PRESET", help="feature preset (see the list below)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    parser.add_argument(
        "--workers",
        type=non_negative_int,  # as `musetag tag --workers` refuses -1, instead of quietly running here
        default=_default_workers(),
        metavar="N",
        help=f"files processed at the same time, in worker processes; 0 or 1: in this process (default: one per core, "
             f"here {_default_workers()})",
    )
    parser.add_argument(
        "--skip-existing", action="store_true", help="keep .npy files that already exist instead of recomputing them"
    )
    from musetag.commands import add_progress_arguments

    add_progress_arguments(parser, "--quiet")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musetag.commands import show_progress
    from musetag.features.extract import extract_to_directory

    from musetag.outputs import check_writable

    check_writable(args.out, folder=True)

    def on_error(path, message):
        print(f"musetag features: skipped: {message}", file=sys.stderr)

    report = extract_to_directory(
        args.inputs,
        args.preset,
        args.out,
        workers=max(1, args.workers),
        overwrite=not args.skip_existing,
        progress=show_progress(args),
        on_error=on_error,
    )
    done = len(report.written) + len(report.skipped)
    print(
        f"wrote {len(report.written)} feature file(s) to {args.out}"
        + (f", kept {len(report.skipped)} existing" if report.skipped else "")
        + (f", {len(report.failed)} file(s) failed" if report.failed else "")
    )
    from musetag.exit_codes import EXIT_NOTHING_DONE, EXIT_OK, EXIT_SOME_FAILED

    if not done:
        return EXIT_NOTHING_DONE
    return EXIT_SOME_FAILED if report.failed else EXIT_OK
