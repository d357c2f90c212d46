"""``musetag pull NAME``: download a pretrained model into the cache and convert it to a package."""
from __future__ import annotations

import argparse
import textwrap


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pull",
        help="download a pretrained model (trained on real music) into the cache",
        description=(
            "Fetch a pretrained model's upstream weights (pinned URL, sha256 checked; or from the folder "
            "$MUSETAG_MODEL_MIRROR), read them as weights only and convert them into a musetag model package "
            "under $MUSETAG_HOME/models/NAME (default ~/.cache/musetag), and export its network to ONNX into "
            "$MUSETAG_HOME/onnx so the first `musetag tag` runs without PyTorch. Every command that takes a MODEL also "
            "accepts NAME and pulls it on first use. `musetag models --pretrained` lists the names."
        ),
    )
    p.add_argument("names", metavar="NAME", nargs="*", help="pretrained model name(s)")
    p.add_argument("--all", action="store_true", help="pull every model of the catalogue")
    p.add_argument("--force", action="store_true", help="fetch, convert and export the ONNX graph again even when cached")
    from musetag.commands import add_progress_arguments

    add_progress_arguments(p)
    # the mirror's layout, read from the catalogue when the help is shown (not when the parser is built)
    p.format_help = lambda: argparse.ArgumentParser.format_help(p) + mirror_layout()
    p.set_defaults(func=run)


def mirror_layout() -> str:
    """The files a ``$MUSETAG_MODEL_MIRROR`` folder holds, one line each with the models that use it."""
    from musetag.inference.catalogue import catalogue

    users: dict[str, list[str]] = {}
    for name, entry in catalogue().items():
        users.setdefault(entry.mirror_path, []).append(name)
        if entry.thresholds is not None:
            users.setdefault(entry.thresholds.mirror_path, []).append(f"{name} (per-tag thresholds)")
    width = max(len(path) for path in users)
    lines = [f"  {path.ljust(width)}  {', '.join(names)}" for path, names in users.items()]
    head = textwrap.fill("Offline: set $MUSETAG_MODEL_MIRROR to a folder holding the upstream files at these paths "
                         "(size and sha256 are checked as for a download; the mirror is never modified):", 79)
    return f"\n{head}\n" + "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from musetag.commands import show_progress
    from musetag.errors import ConfigError
    from musetag.inference import hub

    names = list(hub.catalogue()) if args.all else list(args.names)
    if not names:
        raise ConfigError("name a pretrained model (see `musetag models --pretrained`) or pass --all")
    for name in names:
        hub.get_entry(name)  # unknown names fail before anything is fetched
    from musetag.inference.loading import load_model
    from musetag.inference.runners import prepare_onnx

    for name in names:
        folder = hub.pull(name, force=args.force, progress=show_progress(args))
        package = load_model(folder)
        if args.force:  # the cached graph is exported again too, whatever is in the file now
            from musetag.inference.export import cached_onnx_path

            cached_onnx_path(package).unlink(missing_ok=True)
        # the graph `musetag tag` runs by default, exported now rather than on the first tag
        graph = prepare_onnx(package)
        print(f"{name}: {folder}" + (f" (ONNX graph {graph})" if graph is not None else ""))
    return 0
