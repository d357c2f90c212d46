"""The CLI branch of the Ray engine (``musetag tag/embed ... --engine ray``): options of the local engine that
Ray cannot honour are refused, Ray is started (or joined) quietly, and the runs of
:mod:`musetag.tag.ray_engine` are reported like the local path's."""
from __future__ import annotations

import logging
import sys
from typing import Any

from musetag.errors import ConfigError
from musetag.tag.ray_engine import _iter_rows, _ray, run_embed, run_tag, tag_dataset


def quiet_cli_ray(address: str | None, *, verbose: bool, progress: bool) -> None:
    """Ray for the CLI: without ``musetag -v`` only Ray's errors reach the terminal (no INFO/WARNING lines
    about the cluster start, token authentication, Ray Data's execution plan or its disabled bars, no
    deprecation warnings from Ray's own code, no workers' log lines, and no lines of the C++ core worker,
    whose "E" level also carries notices such as Ray Data's "constructor arguments in the object store and
    max_restarts > 0": ``RAY_BACKEND_LOG_LEVEL=fatal`` unless set; failures still arrive as Python errors);
    Ray Data's progress bars follow ``--progress``/``--no-progress`` like the local path's."""
    import warnings

    ray = _ray()
    level = logging.INFO if verbose else logging.ERROR
    if not verbose:
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
    if not ray.is_initialized():
        if verbose:
            ray.init(address=address, log_to_driver=True, logging_level=level)
        else:
            _init_without_notices(ray, address, level)
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(level)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = verbose


#: what the core worker says when it reads RAY_BACKEND_LOG_LEVEL, at the start of every CLI run
_LEVEL_NOTICE = "Set ray log level from environment variable"


def _init_without_notices(ray, address: str | None, level: int) -> None:
    """``ray.init`` with the C++ core worker's own lines off (``RAY_BACKEND_LOG_LEVEL=fatal``, unless set),
    its one notice that it read that setting dropped, and anything else written meanwhile passed on."""
    import os
    import sys

    from musetag._stderr import captured_stderr

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # read by the core worker ray.init starts
    said: list[str] = []
    try:
        with captured_stderr(said):
            ray.init(address=address, log_to_driver=False, logging_level=level)
    finally:
        for line in said:
            if _LEVEL_NOTICE not in line:
                print(line, file=sys.stderr)


def refuse_local_options(args) -> None:
    """Options of the local engine that --engine ray cannot honour are refused, not silently ignored."""
    if getattr(args, "workers", None) is not None:
        raise ConfigError(
            f"--workers {args.workers} sets the local engine's decoding processes and has no meaning with --engine "
            "ray: Ray decodes in tasks on every CPU of the cluster, and --ray-actors N sets the copies of the "
            "network; drop --workers")


def shard_part(args) -> bool:
    """Whether this ``--shard I/N`` part holds none of the files: then, as without Ray, it has nothing to do,
    says so on stderr and the command exits 0 before Ray is started or joined. A part with files is listed here
    once: ``args.paths`` becomes its files (and ``args.shard`` None), so the run does not walk the catalogue again."""
    from musetag.commands import empty_shard
    from musetag.tag.ray_engine import expand_manifests, list_files
    from musetag.tag.shard import parse_shard

    shard = parse_shard(args.shard)
    if shard.is_whole:
        return False
    files = list_files(args.paths, recursive=args.recursive, shard=shard)
    if files:
        args.paths, args.shard, args.recursive = files, None, False
        return False
    return empty_shard(args, shard, paths=expand_manifests(args.paths))  # a manifest's files count


def cli_options(args) -> dict[str, Any]:
    refuse_local_options(args)
    _ray()
    from musetag.commands import show_progress
    from musetag.tag.shard import parse_shard

    quiet_cli_ray(args.address, verbose=bool(getattr(args, "verbose", False)), progress=show_progress(args))

    return dict(batch_size=args.batch_size, num_actors=args.ray_actors, gpus_per_actor=args.gpus_per_worker,
                address=args.address, recursive=args.recursive, shard=parse_shard(args.shard),
                backend="torch" if args.backend == "auto" else args.backend)  # auto: the local engine's fast start


def tag_command(args) -> int:
    from musetag.commands import show_progress, split_model_and_paths
    from musetag.exit_codes import exit_status

    refuse_local_options(args)
    _ray()
    args.model, args.paths = split_model_and_paths(args.items, args.model)
    if shard_part(args):
        return 0
    opts = cli_options(args)
    opts.update(threshold=args.threshold, top_k=args.top_k, stream_seconds=args.stream_minutes * 60.0)
    if args.out is None:
        ok = failed = 0
        for row in _iter_rows(tag_dataset(args.model, args.paths, **opts)):
            if row["status"] == "ok":
                ok += 1
                tops = ", ".join(f"{t['tag']} {t['score']:.3f}" for t in row["top_tags"])
                print(f"{row['path']}\tok\t{tops}" + "".join(f"\twarning: {w}" for w in row["warnings"] or []))
            else:
                failed += 1
                print(f"{row['path']}\terror\t{row['status']}")
        return exit_status(ok, failed)
    summary = run_tag(args.model, args.paths, args.out, retry_errors=args.retry_errors,
                      progress=show_progress(args), **opts)
    print(summary.line(args.out, engine="Ray"), file=sys.stderr)
    return summary.exit_status


def embed_command(args) -> int:
    from musetag.commands import show_progress

    refuse_local_options(args)
    if shard_part(args):
        return 0
    opts = cli_options(args)
    report = run_embed(args.model, args.paths, args.out, retry_errors=args.retry_errors, resume=not args.restart,
                       progress=show_progress(args), **opts)
    print(report.summary() + " (Ray)", file=sys.stderr)
    return report.exit_status
