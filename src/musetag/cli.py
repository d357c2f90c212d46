"""The ``musetag`` command line: thin argument parsing over library functions.

Each subcommand lives in ``musetag/commands/<name>.py`` and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (a callable taking the parsed namespace and returning an exit
code). Commands are discovered, so adding one never touches this file.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pkgutil
import sys

from musetag import __version__
from musetag.errors import MusetagError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musetag",
        description="Recognise the emotions, themes and genres of music from its audio.",
    )
    parser.add_argument("--version", action="version", version=f"musetag {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import musetag.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"musetag.commands.{info.name}")
        module.register(sub)
    return parser


@contextlib.contextmanager
def _one_line_warnings():
    """Warnings while a command runs: each distinct message once, as one line without source code."""
    import warnings

    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if str(message) not in seen:
            seen.add(str(message))
            print(f"musetag: warning: {message}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def _command_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The sub-parser of ``args.command`` (its usage line names the command's options), else ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(getattr(args, "command", None), parser)
    return parser


def _how_to_continue(args) -> str:
    """For an interrupted training run with a checkpoint: the command that continues it."""
    from pathlib import Path

    run = getattr(args, "resume", None) or getattr(args, "out", None)
    if args.command != "train" or not run or not (Path(run) / "checkpoints" / "last.pt").exists():
        return ""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:  # started by torchrun: continued the same way
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world) or world)
        nodes = "" if per_node == world else f" --nnodes={world // max(1, per_node)} (and your rendezvous options)"
        return f"; continue it with: torchrun{nodes} --nproc_per_node={per_node} -m musetag train --resume {run}"
    return f"; continue it with: musetag train --resume {run}"


def _is_main_process() -> bool:
    """False in the processes torchrun started besides rank 0 (they say nothing on an interrupt)."""
    return os.environ.get("RANK", "0") in ("", "0")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # a command whose positionals are one list (`tag [MODEL] PATH...`) takes the ones that follow
        # options too (argparse stops a positional list at the first option); anything else is an error
        into = getattr(args, "extra_positionals", None)
        stray = [e for e in extra if e.startswith("-") and e != "-"]
        if into is None or stray:  # the command's own usage, not musetag's
            _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(stray or extra)}")
        setattr(args, into, list(getattr(args, into)) + extra)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from musetag._allocator import tune_allocator

    # batch commands: big network buffers reused from the heap, not mapped and faulted in every batch;
    # `serve` asks for the server policy (memory given back after each request)
    tune_allocator(policy=getattr(args, "allocator", "batch"))
    try:
        with _one_line_warnings():
            return int(args.func(args) or 0)
    except MusetagError as exc:
        print(f"musetag {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `musetag ... | head`: the reader has gone, which is not an error (an OSError: caught first)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # unwritable output, full disk, ...: one line, the traceback with -v
        from musetag.outputs import describe_os_error

        if args.verbose:
            logging.getLogger("musetag").exception("musetag %s failed", args.command)
        print(f"musetag {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if _is_main_process():
            print(f"musetag {args.command}: interrupted{_how_to_continue(args)}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
