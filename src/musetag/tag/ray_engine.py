"""Tag and embed catalogues with Ray Data (``musetag tag/embed ... --engine ray``).

The pipeline, composable with a user's own Ray code::

    file list (folder, manifest CSV/parquet, or a ray.data.Dataset with a ``path`` column)
      -> decode + features + windows in CPU tasks   (map_batches with the tagger's FrontEnd;
                                                     a bad file becomes an error row, never a failed task)
      -> the network in an actor pool               (one model load per actor, the windows of a whole
                                                     batch of files through the network together;
                                                     ``num_gpus`` per actor when GPUs exist)
      -> result rows                                (the columns of ``musetag tag``)

>>> ds = tag_dataset("my-model", ["/music"], address="auto")   # doctest: +SKIP
>>> ds.write_parquet("s3://bucket/tags/")                        # doctest: +SKIP

:func:`run_tag` writes the rows with the same :class:`~musetag.tag.writers.ResultWriter` as the
local path (so ``musetag merge``/``similar`` read them) and skips files already in ``out``;
:func:`run_embed` writes the embeddings files of ``musetag embed``. Actors are restarted and their
in-flight batches retried when a worker process dies (``max_restarts``/``max_task_retries``);
each file's row is written once (rows are keyed by path).

Rows of :func:`tag_dataset` are Arrow rows: ``scores`` is a struct with one field per tag (null on
an error row), ``top_tags`` a list of ``{tag, score}``; :func:`result_row` turns one into the
plain dict ``musetag tag`` writes.

One file on purpose (about 550 lines): listing, decode tasks, the actor pool and the writer are the
stages of one Ray dataflow; its CLI branch is :mod:`musetag.commands._ray_cli` and the parquet
output :mod:`musetag.tag.ray_parquet`.
"""
from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from musetag.errors import ConfigError
from musetag.textfiles import read_text

log = logging.getLogger(__name__)

__all__ = ["tag_dataset", "embed_dataset", "run_tag", "run_embed", "result_row", "file_dataset", "init_ray"]

INSTALL_HINT = "--engine ray needs Ray: pip install 'musetag[ray]' (or pip install 'ray[data]>=2.9')"
MANIFEST_EXTENSIONS = (".csv", ".parquet", ".txt")
#: memory reserved per decoding task (a few minutes of audio, its features and windows)
DECODE_MEMORY_BYTES = 400 << 20  # Ray measured ~310 MB per decoding worker (torch included)


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def init_ray(address: str | None = None, **kwargs: Any):
    """Connect to a cluster (``"auto"``, ``"HOST:PORT"``, ``"ray://..."``) or, without an address,
    start a local one; a session already connected is kept."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, **kwargs)
    return ray


# ---------------------------------------------------------------------------------------------
# the file list
# ---------------------------------------------------------------------------------------------
def read_manifest(path: str | os.PathLike) -> list[str]:
    """Paths in a manifest: a CSV or parquet file with a ``path`` column (a CSV without one: its
    first column), or a text file with one path per line. Relative paths are taken from the
    manifest's folder."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "path" not in table.column_names:
            raise ConfigError(f"{path}: a parquet manifest needs a 'path' column, found {table.column_names}")
        items = [str(p) for p in table.column("path").to_pylist() if p]
    elif ext == ".csv":
        import csv
        import io

        rows = list(csv.reader(io.StringIO(read_text(path, "file list", error=ConfigError), newline="")))
        if not rows:
            return []
        col = rows[0].index("path") if "path" in rows[0] else 0
        start = 1 if rows[0] and (rows[0][col] == "path" or not os.path.exists(_resolve(rows[0][col], path))) else 0
        items = [r[col] for r in rows[start:] if len(r) > col and r[col]]
    else:
        items = [line.strip() for line in read_text(path, "file list", error=ConfigError).splitlines() if line.strip()]
    return [_resolve(p, path) for p in items]


def _resolve(item: str, manifest: Path) -> str:
    if "://" in item or os.path.isabs(item):
        return item
    return str(manifest.parent / item)


def expand_manifests(sources: Iterable[str | os.PathLike]) -> list[str]:
    """``sources`` with each ``.csv``/``.parquet``/``.txt`` manifest replaced by the paths it lists."""
    expanded: list[str] = []
    for src in sources:
        if Path(src).suffix.lower() in MANIFEST_EXTENSIONS and Path(src).is_file():
            expanded.extend(read_manifest(src))
        else:
            expanded.append(str(src))
    return expanded


def list_files(sources: Iterable[str | os.PathLike], *, recursive: bool = False, shard=None) -> list[str]:
    """Folders and files as ``musetag tag`` lists them; ``.csv``/``.parquet``/``.txt`` files are
    manifests (their paths are tagged, not the manifest)."""
    from musetag.tag.batch import collect_audio_files

    expanded = expand_manifests(sources)
    if shard is None:
        return collect_audio_files(expanded, recursive=recursive)
    from musetag.tag.shard import collect_shard_files

    return collect_shard_files(expanded, shard, recursive=recursive)


def file_dataset(paths_or_dataset: Any, *, recursive: bool = False, shard=None, skip: set[str] | None = None):
    """A ``ray.data.Dataset`` with a ``path`` column: a Dataset is returned as it is; a folder, a
    manifest or a list of them is listed here (on the driver)."""
    ray = _ray()
    if isinstance(paths_or_dataset, ray.data.Dataset):
        return paths_or_dataset
    if isinstance(paths_or_dataset, (str, os.PathLike)):
        paths_or_dataset = [paths_or_dataset]
    files = list_files(paths_or_dataset, recursive=recursive, shard=shard)
    if skip:
        from musetag.tag.writers import row_key

        files = [f for f in files if row_key(f) not in skip]
    return ray.data.from_items([{"path": f} for f in files], override_num_blocks=max(1, min(len(files), 200)))


# ---------------------------------------------------------------------------------------------
# stage 1: decode + features + windows (CPU tasks)
# ---------------------------------------------------------------------------------------------
_FRONTS: dict[str, Any] = {}


def _front(features: dict, segment: dict, stream_seconds: float, block_seconds: float):
    key = json.dumps([features, segment, stream_seconds, block_seconds], sort_keys=True, default=str)
    front = _FRONTS.get(key)
    if front is None:
        import torch

        from musetag.inference.frontend import FrontEnd

        torch.set_num_threads(1)
        front = _FRONTS[key] = FrontEnd(features, segment, stream_seconds=stream_seconds, block_seconds=block_seconds)
    return front


def _pack(segments: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(segments, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _unpack(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _prepare_schema():
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()), ("status", pa.string()), ("duration", pa.float64()),
        ("warnings", pa.list_(pa.string())), ("segments", pa.large_binary()),
    ])


def prepare_batch(batch, *, features: dict, segment: dict, stream_seconds: float, block_seconds: float):
    """Decode, compute features and cut windows for a batch of paths (a ``map_batches`` function).
    A file that fails gets its error message as ``status`` and no segments."""
    import pyarrow as pa

    from musetag.inference.tagger import error_message

    front = _front(features, segment, stream_seconds, block_seconds)
    out = {"path": [], "status": [], "duration": [], "warnings": [], "segments": []}
    for path in batch.column("path").to_pylist():
        path = str(path)
        try:
            if front.is_long(path):  # bounded memory while decoding: only the windows are kept
                segs = np.concatenate(list(front.stream_segments(path)), axis=0)
                duration = front.last_duration
            else:
                segs, duration = front.segments(path)
            if len(segs) == 0:
                raise ValueError("no segments")
            row = ("ok", float(duration), list(front.last_warnings), _pack(segs))
        except Exception as exc:  # noqa: BLE001 - every failure becomes that file's row
            row = (error_message(path, exc), None, [], b"")
        out["path"].append(path)
        for key, value in zip(("status", "duration", "warnings", "segments"), row):
            out[key].append(value)
    return pa.table(out, schema=_prepare_schema())


# ---------------------------------------------------------------------------------------------
# stage 2: the network (an actor pool)
# ---------------------------------------------------------------------------------------------
class _Scorer:
    """One model per actor; the windows of a whole batch of files go through the network together
    (in ``batch_size`` chunks), then each file's outputs are aggregated as the local tagger does."""

    def __init__(self, model: str, *, kind: str = "tag", batch_size: int = 32, threshold=None, top_k: int = 5,
                 device: str = "auto", backend: str = "torch", num_threads: int = 1) -> None:
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.set_num_threads(max(1, int(num_threads)))
        self.kind = kind
        self.top_k = int(top_k)
        if kind == "embed":
            from musetag.inference.embed import load_embedder

            self.model = load_embedder(model, batch_size=batch_size, device=device, backend=backend)
        else:
            from musetag.inference.tagger import Tagger

            kwargs = {"device": device} if backend == "torch" else {}
            self.model = Tagger.from_package(model, backend=backend, threshold=threshold, batch_size=batch_size, **kwargs)
        self.schema = _row_schema(self.model.tags) if kind == "tag" else _embed_schema()

    def __call__(self, batch):
        import pyarrow as pa

        from musetag.inference.tagger import error_message

        m = self.model
        rows = batch.to_pylist()
        segs = {i: _unpack(r["segments"]) for i, r in enumerate(rows) if r["status"] == "ok"}
        results: dict[int, Any] = {}
        if segs:
            order = list(segs)
            try:
                for i, scores in zip(order, m.score_groups([segs[i] for i in order])):
                    results[i] = (scores, len(segs[i]))
            except Exception:  # noqa: BLE001 - retry file by file so one bad input fails alone
                for i in order:
                    try:
                        results[i] = (m.aggregate(segs[i]), len(segs[i]))
                    except Exception as exc:  # noqa: BLE001
                        results[i] = error_message(rows[i]["path"], exc)
        out = []
        for i, r in enumerate(rows):
            res = results.get(i)
            if isinstance(res, tuple):
                result = m.make_result(res[0], r["path"], r["duration"], res[1], r["warnings"])
            else:
                result = m.error_result(r["path"], res if isinstance(res, str) else r["status"])
            out.append(self._row(result))
        return pa.Table.from_pylist(out, schema=self.schema)

    def _row(self, result) -> dict[str, Any]:
        if self.kind == "embed":
            vec = result.scores_array
            ok = result.ok and vec is not None and bool(np.all(np.isfinite(vec)))
            status = result.status if not result.ok else ("ok" if ok else f"{result.path}: the embedding has NaN/inf values")
            return {"path": result.path, "status": status, "duration": result.duration, "warnings": list(result.warnings),
                    "embedding": [float(x) for x in vec] if ok else None}
        row = result.to_row(self.top_k)
        row["status"] = " ".join(str(row["status"]).split())
        row["scores"] = row["scores"] or None
        return row


def _row_schema(tags: list[str]):
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()), ("status", pa.string()), ("duration", pa.float64()),
        ("top_tags", pa.list_(pa.struct([("tag", pa.string()), ("score", pa.float64())]))),
        ("decisions", pa.list_(pa.string())), ("warnings", pa.list_(pa.string())),
        ("scores", pa.struct([(t, pa.float64()) for t in tags])),
    ])


def _embed_schema():
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()), ("status", pa.string()), ("duration", pa.float64()),
        ("warnings", pa.list_(pa.string())), ("embedding", pa.list_(pa.float32())),
    ])


def result_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of :func:`tag_dataset` as ``musetag tag`` writes it (``scores`` ``{}`` on errors)."""
    row = dict(row)
    row["scores"] = dict(row.get("scores") or {})
    row["top_tags"] = [dict(t) for t in row.get("top_tags") or []]
    row["decisions"] = list(row.get("decisions") or [])
    row["warnings"] = list(row.get("warnings") or [])
    return row


def _pipeline(
    kind: str, model, paths_or_dataset, *, batch_size: int, files_per_batch: int, num_actors: int,
    gpus_per_actor: float, cpus_per_actor: float, cpus_per_task: float, address: str | None, recursive: bool,
    shard, skip, threshold, top_k: int, backend: str, stream_seconds: float, block_seconds: float,
):
    init_ray(address)
    ray = _ray()
    _check_gpus(ray, gpus_per_actor, num_actors)
    from musetag.inference.loading import load_model

    package = load_model(model)  # on the driver: checks the model and gives the front end's config
    if kind == "tag":  # --threshold checked here, not in every actor
        from musetag.inference.tagger import resolve_thresholds

        resolve_thresholds(package, threshold)
    model_path = str(Path(package.path).resolve())
    ds = file_dataset(paths_or_dataset, recursive=recursive, shard=shard, skip=skip)
    files_per_batch = max(1, int(files_per_batch))
    ds = ds.map_batches(
        prepare_batch,
        batch_size=files_per_batch,
        batch_format="pyarrow",
        num_cpus=cpus_per_task,
        fn_kwargs={"features": package.features, "segment": _segment(kind, package), "stream_seconds": stream_seconds,
                   "block_seconds": block_seconds},
        # decoding holds a song's audio and features: reserving memory for it also keeps Ray Data from
        # fusing this stage into the actors (it fuses stages with equal resource requests), so decoding
        # scales with the CPUs, not with the number of model copies
        memory=DECODE_MEMORY_BYTES,
        **_retry_args(max_retries=3),  # a task whose worker died is run again (its output is produced once)
    )
    if num_actors < 1:
        raise ConfigError(f"--ray-actors must be at least 1, got {num_actors}")
    ds = ds.map_batches(
        _Scorer,
        batch_size=files_per_batch,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=int(num_actors)),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor or None,
        fn_constructor_kwargs={"model": model_path, "kind": kind, "batch_size": batch_size, "threshold": threshold,
                               "top_k": top_k, "backend": backend, "num_threads": max(1, int(cpus_per_actor)),
                               "device": "auto" if gpus_per_actor else "cpu"},
        # a killed actor is started again and the batches it held are run again (Ray Data's default for
        # actor pools since 2.60, where passing these is deprecated; given explicitly to older Ray)
        **_retry_args(max_restarts=-1, max_task_retries=-1),
    )
    return ds


def _segment(kind: str, package) -> dict:
    """The window rule the decoding tasks cut: the package's own for tagging, ``musetag embed``'s default
    (``windows=fit``, :func:`musetag.inference.embed.embedding_package`) for embeddings, so both engines give one
    vector."""
    if kind != "embed":
        return package.segment
    from musetag.inference.embed import DEFAULT_WINDOWS, embedding_package

    return embedding_package(package, DEFAULT_WINDOWS).segment


def _check_gpus(ray, gpus_per_actor: float, num_actors: int) -> None:
    """Refuse GPU actors on a cluster without the GPUs for even one of them: Ray would otherwise wait
    for a GPU forever without a word (a fixed cluster never gets one)."""
    if not gpus_per_actor:
        return
    if gpus_per_actor < 0:
        raise ConfigError(f"--gpus-per-worker must be 0 or more, got {gpus_per_actor:g}")
    have = float(ray.cluster_resources().get("GPU", 0.0))
    if have < gpus_per_actor:
        raise ConfigError(
            f"--gpus-per-worker {gpus_per_actor:g}: the Ray cluster has {have:g} GPU(s), so no model copy could start; "
            "drop --gpus-per-worker (CPU actors) or add GPU nodes to the cluster (`ray status` lists its resources)")
    if have < gpus_per_actor * num_actors:
        log.warning("the cluster's %g GPU(s) fit %d of the %d model copies asked for; the others wait for a GPU",
                    have, int(have // gpus_per_actor), num_actors)


def _retry_args(**kwargs: Any) -> dict[str, Any]:
    """Ray remote retry options for Ray releases before 2.60 (later ones default to retrying system
    failures and deprecate these keyword arguments of ``map_batches``)."""
    import ray

    try:
        major, minor = (int(x) for x in ray.__version__.split(".")[:2])
    except ValueError:
        return {}
    return kwargs if (major, minor) < (2, 60) else {}


_DEFAULTS = dict(batch_size=32, files_per_batch=8, num_actors=1, gpus_per_actor=0.0, cpus_per_actor=1.0,
                 cpus_per_task=1.0, address=None, recursive=False, shard=None, skip=None, threshold=None, top_k=5,
                 backend="torch", stream_seconds=600.0, block_seconds=None)


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown options: {', '.join(sorted(unknown))}")
    opts = {**_DEFAULTS, **kwargs}
    if opts["block_seconds"] is None:
        from musetag.inference.frontend import DEFAULT_BLOCK_SECONDS

        opts["block_seconds"] = DEFAULT_BLOCK_SECONDS
    return opts


def tag_dataset(model, paths_or_dataset, **kwargs: Any):
    """A ``ray.data.Dataset`` of ``musetag tag`` rows (lazy: nothing runs until it is consumed).

    ``model``: a package folder/archive or a pretrained name. ``paths_or_dataset``: folders, audio
    files, manifests (``.csv``/``.parquet`` with a ``path`` column, ``.txt``), or a Dataset with a
    ``path`` column. Options: ``batch_size`` (windows per network batch), ``files_per_batch``,
    ``num_actors``, ``gpus_per_actor``, ``cpus_per_actor``, ``cpus_per_task``, ``address``,
    ``recursive``, ``shard``, ``threshold``, ``top_k``, ``backend``, ``stream_seconds``."""
    return _pipeline("tag", _model_path(model), paths_or_dataset, **_options(kwargs))


def embed_dataset(model, paths_or_dataset, **kwargs: Any):
    """A ``ray.data.Dataset`` of ``path, status, duration, warnings, embedding`` rows (the vector of
    ``musetag embed``: the mean of the windows' ``forward_features``; null on an error row)."""
    return _pipeline("embed", _model_path(model), paths_or_dataset, **_options(kwargs))


def _model_path(model) -> str:
    """The package's resolved path (a pretrained name is pulled into the cache here, on the driver)."""
    from musetag.inference.loading import load_model
    from musetag.inference.package import ModelPackage

    package = model if isinstance(model, ModelPackage) else load_model(model, load_weights=False)
    return str(Path(package.path).resolve())


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def run_tag(model, sources, out, *, retry_errors: bool = False, progress: bool = False, **kwargs: Any):
    """Tag ``sources`` on Ray into ``out`` (.csv/.json/.jsonl, as ``musetag tag``, or .parquet: see
    :mod:`musetag.tag.ray_parquet`); files already in ``out`` are skipped. Returns a :class:`~musetag.tag.batch.TagSummary`."""
    from musetag.tag.batch import TagSummary
    from musetag.inference.loading import load_model
    from musetag.tag.writers import ResultWriter

    model = _model_path(model)
    if Path(out).suffix.lower() == ".parquet":  # through a resumable JSONL file, then one parquet file
        from musetag.tag.ray_parquet import run_tag_parquet

        return run_tag_parquet(run_tag, model, sources, out, tags=list(load_model(model).tags),
                               retry_errors=retry_errors, progress=progress, **kwargs)
    package = load_model(model)
    opts = _options(kwargs)
    files = list_files(sources if not isinstance(sources, (str, os.PathLike)) else [sources],
                       recursive=opts["recursive"], shard=opts["shard"])
    from musetag.inference.tagger import decision_record, resolve_thresholds

    meta = {"model": {"name": package.model_name, "package": str(package.path), "sha256": package.sha256},
            "decision": decision_record(package, resolve_thresholds(package, opts["threshold"])), "engine": "ray"}
    summary = TagSummary(total=len(files))
    start = time.perf_counter()
    with ResultWriter(out, list(package.tags), retry_errors=retry_errors, meta=meta) as writer:
        todo = [f for f in files if not writer.is_done(f)]
        summary.skipped = len(files) - len(todo)
        summary.failed_before = sum(1 for f in files if writer.failed_earlier(f))
        if todo:
            opts.pop("recursive"), opts.pop("shard"), opts.pop("skip")
            ds = _pipeline("tag", model, todo, recursive=False, shard=None, skip=None, **opts)
            for row in _iter_rows(ds):
                if writer.is_done(row["path"]):  # never twice, whatever the engine re-ran
                    continue
                row = result_row(row)
                writer.write(row)
                if row["status"] == "ok":
                    summary.ok += 1
                    summary.audio_seconds += row.get("duration") or 0.0
                    summary.warned += bool(row["warnings"])
                else:
                    summary.failed += 1
                    if progress:
                        print(f"error: {row['status']}", file=sys.stderr)
        missing = [f for f in todo if not writer.is_done(f)]
        if missing:
            raise RuntimeError(f"Ray returned no row for {len(missing)} files (e.g. {missing[0]}); run again to resume")
    summary.wall_seconds = time.perf_counter() - start
    return summary


def _iter_rows(ds):
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1):
        yield from batch.to_pylist()


def run_embed(model, sources, out, *, retry_errors: bool = False, resume: bool = True, progress: bool = False,
              flush_every: int = 256, **kwargs: Any):
    """Embed ``sources`` on Ray into ``out`` (``.npy`` or ``.parquet`` with the side files of
    ``musetag embed``); resumes from an existing output and its ``.partial/`` folder."""
    import shutil

    from musetag.inference import embeddings_file as F
    from musetag.tag import embed_files as E
    from musetag.inference.embed import DEFAULT_WINDOWS
    from musetag.inference.loading import load_model
    from musetag.tag.shard import Shard, parse_shard
    from musetag.tag.writers import check_output_file, resumed_elsewhere, row_key

    out = Path(out)
    F._check_ext(out)
    out_exists = check_output_file(out)
    if out.suffix.lower() == ".parquet":
        F._pyarrow()
    model = _model_path(model)
    package = load_model(model)
    opts = _options(kwargs)
    shard = opts["shard"] if isinstance(opts["shard"], Shard) else parse_shard(opts["shard"])
    files = list_files(sources if not isinstance(sources, (str, os.PathLike)) else [sources],
                       recursive=opts["recursive"], shard=shard)
    side = F.side_files(out)
    report = E.EmbedReport(out=out, total=len(files))
    # what an earlier run left, refused when made by another model or window rule (as `musetag embed` does)
    done, errors, chunks, base = E._resume(out, side, package.sha256, False, resume=resume, out_exists=out_exists,
                                           retry_errors=retry_errors, windows=DEFAULT_WINDOWS)
    todo = E.pending(files, done, errors, base, report)
    elsewhere = resumed_elsewhere(base)  # then the files are listed absolute
    start = time.perf_counter()
    try:
        if todo:
            for k in ("recursive", "shard", "skip"):
                opts.pop(k)
            ds = _pipeline("embed", model, todo, recursive=False, shard=None, skip=None, **opts)
            for row in _iter_rows(ds):
                key = row_key(row["path"])
                if key in done:
                    continue
                if elsewhere and not os.path.isabs(row["path"]):  # resumed from another folder: absolute
                    row["path"] = os.path.abspath(row["path"])
                if row["status"] == "ok":
                    vec = np.asarray(row["embedding"], dtype=np.float32)
                    chunks.add(row["path"], vec)
                    done[key] = (row["path"], vec)
                    errors.pop(row["path"], None)
                    report.ok += 1
                    report.audio_seconds += row.get("duration") or 0.0
                    if len(chunks.paths) >= flush_every:
                        chunks.flush()
                else:
                    errors[row["path"]] = row["status"]
                    report.failed += 1
                    if progress:
                        print(f"error: {row['status']}", file=sys.stderr)
    finally:
        chunks.flush()
    report.wall_seconds = time.perf_counter() - start
    rows = sorted(done.values(), key=lambda pv: pv[0])
    from musetag import __version__

    dim = int(rows[0][1].shape[0]) if rows else 1
    vectors = np.stack([v for _, v in rows]) if rows else np.zeros((0, dim), np.float32)
    report.dim = dim if rows else 0
    meta = {
        "model": package.model_name, "model_args": package.model_args,
        "model_package": str(Path(package.path).resolve()) if package.path else None,
        "model_sha256": package.sha256, "layer": "forward_features", "pooling": "mean over the tagger's segments",
        "segment": _segment("embed", package), "features": {k: v for k, v in package.features.items() if k not in ("mean", "std")},
        "windows": DEFAULT_WINDOWS, "shard": str(shard) if not shard.is_whole else None, "cwd": base,
        "musetag_version": __version__, "engine": "ray",
    }
    F.write_embeddings(out, [p for p, _ in rows], vectors, meta)
    E._write_errors(side["errors"], errors)
    shutil.rmtree(side["partial"], ignore_errors=True)
    return report
