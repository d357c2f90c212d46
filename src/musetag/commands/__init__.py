"""Subcommands of the musetag CLI: one module each, discovered by musetag.cli."""
import argparse

#: help of ``--allow-unsafe-pickle`` (commands that read .pt/.pth files; see musetag.models.safe_load)
UNSAFE_PICKLE_HELP = (
    "DANGEROUS: unpickle .pt/.pth files in full when they hold more than tensors (old musetag "
    "checkpoints, foreign training pickles). A pickle can run any code: use only for files you trust."
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's ArgumentDefaultsHelpFormatter, less the noise: no "(default: ...)" added to a help that
    already says its default in words, nor "(default: None)" / "(default: False)" (an option left out)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False) or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def _whole_number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    value = _whole_number(text, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: give 0 or more")
    return value


def check_corpus_flags(clips: int, seconds: float, clips_flag: str) -> None:
    """A synthetic corpus's size, refused by the flags the user typed (``synth``, ``demo``) before any work: the
    library's own check speaks of make_corpus's arguments."""
    import math

    from musetag.errors import ConfigError

    if clips < 1:
        raise ConfigError(f"{clips_flag} must be at least 1, got {clips} (default 200)")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"--seconds must be a positive number of seconds, e.g. --seconds 6, got {seconds:g} "
                          "(default 10)")


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0-65535 (0: any free port)."""
    value = _whole_number(text, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port: give 1-65535 (0 picks a free one)")
    return value


def looks_like_model(text: str) -> bool:
    """Whether a command-line item names a model (package folder or archive, run folder, pretrained name)
    rather than audio to tag."""
    import os

    from musetag.inference.hub import is_pretrained_name

    if not os.path.exists(text):
        return is_pretrained_name(text)
    if os.path.isdir(text):
        return os.path.isfile(os.path.join(text, "musetag.json")) or os.path.isdir(os.path.join(text, "checkpoints"))
    return text.lower().endswith((".zip", ".tar", ".tar.gz", ".tgz"))


def split_model_and_paths(items: list[str], explicit: str | None) -> tuple[str, list[str]]:
    """``[MODEL] PATH...`` -> (model, paths): the first item is the model when it looks like one (or
    ``--model`` names it); otherwise every item is audio and the default pretrained model is used."""
    import sys

    from musetag.errors import ConfigError
    from musetag.inference.hub import DEFAULT_MODEL

    if explicit:
        return explicit, list(items)
    if items and looks_like_model(items[0]):
        if len(items) == 1:
            raise ConfigError(f"{items[0]} is a model: give the audio files or folders to tag after it")
        return items[0], list(items[1:])
    if items:
        _refuse_model_lookalike(items[0], len(items))
    print(f"using the default pretrained model {DEFAULT_MODEL} (choose another with --model NAME_OR_PACKAGE; "
          "`musetag models --pretrained` lists them)", file=sys.stderr)
    return DEFAULT_MODEL, list(items)


def _refuse_model_lookalike(first: str, n_items: int) -> None:
    """:class:`ConfigError` when the first item is no model but was surely meant as one: a name that is no
    file and no audio (a mistyped pretrained name, a package path that does not exist), a package folder
    without its description, or a folder of packages. Tagging the rest with the default model instead
    would label a catalogue with the wrong model."""
    import difflib
    import os

    from musetag.errors import ConfigError
    from musetag.inference.catalogue import catalogue
    from musetag.inference.package import DESCRIPTION_FILE, WEIGHTS_FILE
    from musetag.tag.files import AUDIO_EXTENSIONS

    hint = "`musetag models --pretrained` lists the pretrained names"
    if not os.path.lexists(first):
        if os.path.splitext(first)[1].lower() in AUDIO_EXTENSIONS:
            return  # a missing audio file: its own error row
        close = difflib.get_close_matches(first, list(catalogue()), n=3, cutoff=0.75)
        if close or n_items > 1:
            raise ConfigError(
                f"{first}: no such pretrained model, package or audio file"
                + (f"; did you mean {', '.join(close)}?" if close else "")
                + f" ({hint}; a package is a folder with {DESCRIPTION_FILE}, or its .zip/.tar archive)")
        return
    if not os.path.isdir(first):
        return
    if os.path.isfile(os.path.join(first, WEIGHTS_FILE)):
        raise ConfigError(f"{first}: this package folder has {WEIGHTS_FILE} but no {DESCRIPTION_FILE}, so it cannot be "
                          "loaded; copy the whole package again (or `musetag pull --force NAME` for a pretrained one)")
    try:
        inside = sorted(e.name for e in os.scandir(first)
                        if e.is_dir() and os.path.isfile(os.path.join(e.path, DESCRIPTION_FILE)))
    except OSError:
        return
    if inside:
        raise ConfigError(f"{first} is a folder of model packages, not one: name one of them, e.g. "
                          f"{os.path.join(first, inside[0])}")


def add_ray_arguments(p) -> None:
    """``--engine ray`` and its options for `tag` and `embed` (musetag.tag.ray_engine runs them)."""
    g = p.add_argument_group("Ray (--engine ray)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine; ray: a Ray Data pipeline (decode in CPU tasks, "
                        "the network in an actor pool) on a Ray cluster (pip install 'musetag[ray]')")
    g.add_argument("--address", default=None,
                   help="Ray cluster to join: auto (the one `ray start` runs here) or HOST:PORT; default: a local "
                        "Ray started for this run")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per network actor (e.g. 1 or 0.25)")
    g.add_argument("--ray-actors", type=int, default=1, help="network actors (model copies)")


def add_progress_arguments(p, *no_aliases: str) -> None:
    """``--progress`` / ``--no-progress`` (plus ``no_aliases``, e.g. ``--quiet``) for a command that shows
    progress bars; :func:`show_progress` turns them into the yes/no the library functions take."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show progress bars on stderr even when it is not a terminal (default: only on a terminal)")
    g.add_argument("--no-progress", *no_aliases, dest="progress", action="store_false", default=None,
                   help="never show progress bars")


def empty_shard(args, shard, paths=None) -> bool:
    """Whether ``args.paths`` (or ``paths``) hold audio but none of it falls in this ``--shard`` (then said on
    stderr): a part of an array job with nothing to do has succeeded (``tag`` and ``embed`` exit 0), it has not failed."""
    import sys

    from musetag.tag.shard import empty_shard_note

    note = empty_shard_note(args.paths if paths is None else paths, shard, recursive=args.recursive)
    if note:
        print(note, file=sys.stderr)
    return note is not None


def show_progress(args) -> bool:
    """Progress bars only when stderr is a terminal, unless ``--progress`` or ``--no-progress`` says otherwise:
    a log file or a pipe should not fill up with bar redraws."""
    import sys

    chosen = getattr(args, "progress", None)
    if chosen is not None:
        return bool(chosen)
    return bool(getattr(sys.stderr, "isatty", lambda: False)())
