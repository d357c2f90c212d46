"""``musetag label FOLDER --tags "a,b" --out PROJECT_DIR``: a labelling page that learns as you click."""
from __future__ import annotations

import argparse
from pathlib import Path

#: the catalogue backbone whose embedding labelled Emotify's moods best (grouped CV on train + validation,
#: linear probe): bench/results/label-backbone.md, made by bench/label_backbone.py
DEFAULT_BACKBONE = "mtat-musicnn"


def register(subparsers) -> None:
    from musetag.commands import HelpFormatter, port_number

    p = subparsers.add_parser(
        "label",
        help="label a folder of music with your own tags on a page that learns as you click",
        description=(
            "Embed the audio files of FOLDER (in the background, into the same per-file store as `prepare`'s embed: "
            "caches, so a second project over the same files embeds nothing) and serve a labelling page on "
            "127.0.0.1: it plays the proposed track, tags are toggled by click or keys 1-9, Enter saves (an empty "
            "selection: none of the tags), S skips, U undoes. Every label is appended to PROJECT_DIR/labels.csv "
            "(fsynced before the answer); after each one a logistic-regression head per tag is refit and every "
            "track rescored; the next track is drawn at random (the page's menu offers the learning order: diverse "
            "until each tag has 2 positives, then uncertain; it did not beat random order on Emotify: "
            "bench/results/labelling.md) or in folder order. `musetag label PROJECT_DIR` resumes (and picks up new files); "
            "`musetag label PROJECT_DIR --export OUT.csv` writes a manifest (path,tags,split,group) for prepare/train, "
            "`--export OUT_DIR` a package (backbone + head chosen as `musetag train probe-auto` chooses). "
            "`--task regression --targets valence,arousal`: a slider per target (values 0..1) instead of tag buttons, "
            "a ridge head refit after each label."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("folder", metavar="FOLDER", help="the folder of audio files, or an existing PROJECT_DIR to resume")
    p.add_argument("--tags", default=None, help='the tags to label, comma-separated: --tags "focus,workout,late night"')
    p.add_argument("--out", default=None, metavar="PROJECT_DIR", help="the project folder (labels.csv, project.json)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE,
                   help="the embedding model: a pretrained name (`musetag models --pretrained`) or a package path; "
                        "the default labelled moods best of the catalogue (Emotify, artist-grouped CV: "
                        "bench/results/label-backbone.md)")
    p.add_argument("--task", choices=("multilabel", "multiclass", "regression"), default="multilabel",
                   help="multilabel: any number of tags per track; multiclass: exactly one (or none); regression: "
                        "a value per --targets name")
    p.add_argument("--targets", default=None, metavar="NAMES",
                   help='--task regression: the values to rate, comma-separated: --targets "valence,arousal"')
    p.add_argument("--group-by", choices=("folder", "artist", "file"), default=None,  # label_project.GROUP_BY
                   help="what an export keeps together (one split, one CV fold): the file's parent folder, its "
                        "artist tag (a file without one: its folder, counted in a warning), or the file itself (each "
                        "track its own group: a flat folder still gets validation and test tracks). Default: the "
                        "project's setting (folder for a new project)")
    p.add_argument("--recursive", action="store_true", help="include audio files in subfolders")
    p.add_argument("--labels", default=None, metavar="CSV",
                   help="start from labels you have: a CSV with path and tags (';'-separated) columns")
    p.add_argument("--store", default=None, metavar="DIR",
                   help="the embedding store (default: $MUSETAG_HOME/features, shared by every project)")
    p.add_argument("--export", default=None, metavar="OUT",
                   help="OUT.csv: write the labels of PROJECT_DIR as a manifest (path,tags,split,group); a folder: "
                        "a package (backbone + head refit on every label, thresholds by cross-validation) for "
                        "`musetag tag` and `musetag serve`; then exit")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=port_number, default=8000, help="TCP port")
    p.add_argument("--queue", type=int, default=32, help="requests that may wait for the model; beyond that 503")
    p.add_argument("--queue-timeout", type=float, default=60.0, help="seconds a request may wait for the model")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on every /v1/* request, audio included (default: "
                        "$MUSETAG_API_KEY, else no key)")
    p.add_argument("--allow-anonymous", action="store_true",
                   help="allow listening on a non-loopback --host without an API key")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run, allocator="server")


def open_session(args: argparse.Namespace):
    """The project of ``args`` (created, or resumed from PROJECT_DIR) and its session; all checks first."""
    from musetag.errors import ConfigError
    from musetag.tag.label_project import create_project, is_project, open_project
    from musetag.tag.label_session import LabelSession

    if is_project(args.folder):
        if args.tags is not None or args.out is not None or args.targets is not None:
            raise ConfigError(f"{args.folder} is a labelling project: resume it with `musetag label {args.folder}` "
                              "(its tags and folder are in project.json); --tags and --out start a new one")
        project = open_project(args.folder)
        if args.group_by is not None and args.group_by != project.group_by:
            project.group_by = args.group_by  # the page's exports use it from now on
            project.save()
    else:
        names = _names(args)
        if args.out is None:
            raise ConfigError(f"{args.folder}: a new project needs --out PROJECT_DIR "
                              "(or give an existing PROJECT_DIR to resume it)")
        project = create_project(args.folder, args.out, names, task=args.task, backbone=args.backbone,
                                 recursive=args.recursive, store=args.store, group_by=args.group_by or "folder")
    session = LabelSession(project)
    session.labels()  # a broken labels.csv: one line now, not a traceback from the server's start-up
    return session


def _names(args: argparse.Namespace) -> str:
    """The tags of a new project (--tags), or a regression project's targets (--targets)."""
    from musetag.errors import ConfigError

    if args.task == "regression":
        if args.targets is None or args.tags is not None:
            raise ConfigError(f"{args.folder}: --task regression rates values: give --targets \"valence,arousal\" "
                              "(not --tags)")
        return args.targets
    if args.targets is not None:
        raise ConfigError("--targets is for --task regression; give --tags \"a,b,c\" for tags")
    if args.tags is None:
        raise ConfigError(f"{args.folder}: a new project needs --tags \"a,b,c\" and --out PROJECT_DIR "
                          "(or give an existing PROJECT_DIR to resume it)")
    return args.tags


def run(args: argparse.Namespace) -> int:
    if args.export is not None:
        from musetag.errors import ConfigError
        from musetag.tag.label_export import export_manifest
        from musetag.tag.label_project import is_project, open_project

        if not is_project(args.folder):
            raise ConfigError(f"--export: {args.folder} is not a labelling project (no project.json)")
        if not args.export.lower().endswith(".csv"):
            if Path(args.export).suffix:
                raise ConfigError(f"--export {args.export}: give OUT.csv (a manifest) or a folder (a package)")
            from musetag.tag.label_package import export_package

            report: dict = {}
            out = export_package(open_project(args.folder), args.export, group_by=args.group_by, report=report)
            print(f"wrote {out}: the backbone and the head ({report['note']}); run it with `musetag tag {out} FILES`")
            return 0
        result = export_manifest(open_project(args.folder), args.export, group_by=args.group_by)
        print(f"wrote {args.export}: {result['tracks']} tracks in {result['groups']} groups "
              f"(train {result['splits']['train']}, validation {result['splits']['validation']}, "
              f"test {result['splits']['test']})" + (f"; note: {result['note']}" if "note" in result else ""))
        return 0
    from musetag.serve.auth import check_bind, check_port, resolve_api_key

    check_bind(args.host, resolve_api_key(args.api_key), args.allow_anonymous)  # before any work
    check_port(args.host, args.port)
    session = open_session(args)
    if args.labels is not None:
        from musetag.tag.label_session import import_labels

        print(f"{args.labels}: {import_labels(session, args.labels)} label(s) imported")
    for path, why in sorted(session.job.failures.items()):
        print(f"skipped {path}: {why}")
    progress = session.job.progress()
    print(f"{session.project.dir}: {progress['total']} tracks, {progress['embedded']} already embedded, "
          f"{len(session.job.todo)} to embed; page at http://{args.host}:{args.port}/")
    from musetag.serve.label_app import serve_label

    serve_label(session, host=args.host, port=args.port, api_key=args.api_key,
                allow_anonymous=args.allow_anonymous, log_level=args.log_level, queue=args.queue,
                queue_timeout=args.queue_timeout)
    return 0
