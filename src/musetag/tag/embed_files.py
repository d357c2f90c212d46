"""``musetag embed``: embed every audio file of folders into one embeddings file, resumably.

Files (chosen by the extension of ``--out``; the format is :mod:`musetag.inference.embeddings_file`):

``embeddings.npy``
    float32 matrix ``(tracks, dim)``; beside it ``embeddings.tracks.csv`` (one ``path`` per row, in
    the matrix's order) and ``embeddings.meta.json`` (model, its checksum, dim, shard...).
``embeddings.parquet``
    columns ``path`` (string) and ``embedding`` (fixed-size list of float32); the metadata is stored
    in the Parquet schema under the key ``musetag``. Needs ``pyarrow``.

Both list failed tracks in ``embeddings.errors.csv`` (``path, error``). A run writes finished
tracks to ``<out>.partial/`` every ``flush_every`` tracks; an interrupted run resumes from there
(and from an existing output) and only embeds what is missing. Rows are sorted by path. The vectors
are the :class:`musetag.inference.embed.Embedder`'s.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musetag.errors import ConfigError
from musetag.inference.embeddings_file import _check_ext, _pyarrow, read_embeddings, side_files, write_embeddings
from musetag.tag.writers import check_output_file, done_keys, resume_base, resumed_elsewhere, row_key

log = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    """What :func:`embed_files` did."""

    out: Path
    total: int = 0
    skipped: int = 0
    failed_before: int = 0  # of the skipped: files an earlier run could not embed (kept in the errors file)
    ok: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    dim: int = 0

    @property
    def exit_status(self) -> int:
        from musetag.exit_codes import exit_status

        return exit_status(self.ok, self.failed, self.skipped, self.failed_before)

    @property
    def tracks_per_second(self) -> float:
        return self.ok / self.wall_seconds if self.wall_seconds else 0.0

    def summary(self) -> str:
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        earlier = (f", {self.failed_before} of them failed earlier (listed in the errors file; --retry-errors tries "
                   "them again)") if self.failed_before else ""
        return (
            f"{self.out}: {self.ok} embedded ({self.dim}-d), {self.failed} failed, {self.skipped} already done{earlier} "
            f"({self.audio_seconds / 60:.1f} min of audio, {speed:.0f}x real time, {self.tracks_per_second:.2f} tracks/s)"
        )


def _read_errors(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["path"]: row.get("error", "") for row in csv.DictReader(f) if row.get("path")}


def _write_errors(path: Path, errors: dict[str, str]) -> None:
    if not errors:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "error"])
        for p in sorted(errors):
            w.writerow([p, errors[p]])
    os.replace(tmp, path)


class _Chunks:
    """Finished tracks saved every few tracks under ``<out>.partial/`` (a kill loses at most one chunk)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.count = len(list(folder.glob("chunk-*.npz"))) if folder.is_dir() else 0

    def read(self) -> tuple[list[str], list[np.ndarray]]:
        paths, vecs = [], []
        for f in sorted(self.folder.glob("chunk-*.npz")) if self.folder.is_dir() else []:
            try:
                with np.load(f, allow_pickle=False) as z:
                    paths.extend(str(p) for p in z["paths"])
                    vecs.extend(np.asarray(z["vectors"], dtype=np.float32))
            except (OSError, ValueError, KeyError):
                log.warning("%s: unreadable partial chunk (an interrupted write); its tracks are embedded again", f)
        return paths, vecs

    def add(self, path: str, vector: np.ndarray) -> None:
        self.paths.append(path)
        self.vectors.append(vector)

    def flush(self) -> None:
        if not self.paths:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"chunk-{self.count:06d}.npz"
        self.count += 1
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".chunk-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, paths=np.asarray(self.paths, dtype=str), vectors=np.stack(self.vectors))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        self.paths, self.vectors = [], []


def embed_files(
    model: Any,
    paths: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    recursive: bool = False,
    shard: Any = None,
    workers: int = 0,
    batch_size: int = 32,
    device: str = "cpu",
    backend: str = "torch",
    retry_errors: bool = False,
    resume: bool = True,
    progress: bool = True,
    flush_every: int = 256,
    scores: bool | None = None,
    windows: str | None = None,
) -> EmbedReport:
    """Embed every audio file under ``paths`` into ``out`` (``.npy`` or ``.parquet``).

    ``model``: a model package (path or pretrained name) or an :class:`~musetag.inference.embed.Embedder`. Files and folders are listed as
    ``musetag tag`` lists them; ``shard`` (``"I/N"`` or a :class:`musetag.tag.shard.Shard`) keeps this
    worker's part. Failed files go to ``<name>.errors.csv`` and never stop the run; finished tracks
    are saved to ``<out>.partial/`` every ``flush_every`` tracks, so a killed run resumes where it
    stopped (``resume=False`` starts over); ``retry_errors`` embeds failed files again. ``scores``:
    append each track's tag scores (``--with-scores``; None: as ``model``, an Embedder, was built, else
    no); an output or partial run made with the other setting is refused, never mixed. ``windows``: ``fit``
    (default) or ``upstream`` (:class:`~musetag.inference.embed.Embedder`), recorded in the metadata; an output
    or partial run made with the other rule is refused too.
    """
    from tqdm.auto import tqdm

    from musetag.inference.embed import load_embedder
    from musetag.tag.shard import Shard, collect_shard_files, parse_shard

    out = Path(out)
    _check_ext(out)
    out_exists = check_output_file(out)
    if out.suffix.lower() == ".parquet":
        _pyarrow()
    shard = shard if isinstance(shard, Shard) else parse_shard(shard)
    embedder = load_embedder(model, batch_size=batch_size, device=device, backend=backend, scores=scores,
                             **({"windows": windows} if windows is not None else {}))
    scores = embedder.with_scores
    package = embedder.package
    side = side_files(out)
    files = collect_shard_files(paths, shard, recursive=recursive)
    report = EmbedReport(out=out, total=len(files), dim=embedder.dim)

    done, errors, chunks, base = _resume(out, side, package.sha256, scores, resume=resume, out_exists=out_exists,
                                         retry_errors=retry_errors, windows=embedder.windows)
    todo = pending(files, done, errors, base, report)
    elsewhere = resumed_elsewhere(base)  # then the files are listed absolute
    if report.skipped:
        log.info("%s: %d of %d files already done, skipping them", out, report.skipped, len(files))

    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="file", disable=not progress, dynamic_ncols=True, desc="embed")
    try:
        for result in embedder.tag_many(todo, workers=workers):
            path = str(result.path)
            if elsewhere and not os.path.isabs(path):
                path = os.path.abspath(path)
            vec = result.scores_array
            if result.ok and vec is not None and np.all(np.isfinite(vec)):
                chunks.add(path, vec)
                done[row_key(path)] = (path, vec)
                errors.pop(path, None)
                report.ok += 1
                report.audio_seconds += result.duration or 0.0
                if len(chunks.paths) >= flush_every:
                    chunks.flush()
            else:
                message = result.status if not result.ok else f"{path}: the embedding has NaN/inf values"
                errors[path] = message
                report.failed += 1
                bar.write(f"error: {message}")
                _write_errors(side["errors"], errors)
            bar.update(1)
            bar.set_postfix(ok=report.ok, failed=report.failed, refresh=False)
    finally:
        bar.close()
        chunks.flush()
    report.wall_seconds = time.perf_counter() - start

    _write_output(out, side, done, errors, embedder, shard, report, base)
    return report


def pending(files: list[str], done: dict, errors: dict[str, str], base: str, report: EmbedReport) -> list[str]:
    """The files still to embed: neither in ``done`` nor failed earlier (relative names matched from ``base`` and
    from here, :func:`~musetag.tag.writers.done_keys`); counts the others in ``report``."""
    listed = done_keys((p for p, _ in done.values()), base)
    failed = done_keys(errors, base)
    keys = [row_key(f) for f in files]
    todo = [f for f, k in zip(files, keys) if k not in listed and k not in failed]
    report.skipped = len(files) - len(todo)
    report.failed_before = sum(1 for k in keys if k in failed and k not in listed)
    return todo


def _check_windows(what: str, held: str | None, windows: str) -> None:
    """Refuse to continue ``what`` made with another window rule (none recorded: made before ``fit`` existed)."""
    if (held or "upstream") != windows:
        raise ConfigError(f"{what} holds embeddings made with windows={held or 'upstream'}, not {windows}; pass "
                          "--restart to replace them (or choose another --out, or run again with that rule)")


def _resume(out: Path, side: dict[str, Path], sha256: str, scores: bool, *, resume: bool, out_exists: bool,
            retry_errors: bool, windows: str = "fit") -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, str], _Chunks, str]:
    """What an earlier run of the same model left: ``(done, errors, chunks, base)``; ``done`` maps a file's key
    (:func:`~musetag.tag.writers.row_key`) to ``(path as listed, vector)``; ``base``: the folder the listed relative
    paths are relative to (where the run that started the output ran; this one's for a new output). Refuses an
    output or partial folder of another model or setting."""
    from musetag.inference.embed_scores import check_resume

    package_sha256 = sha256
    done: dict[str, tuple[str, np.ndarray]] = {}  # row_key -> (path as listed, vector)
    base = resume_base(None)
    errors = _read_errors(side["errors"]) if resume else {}
    if retry_errors:
        errors = {}
    if resume and out_exists:
        table = read_embeddings(out)
        if table.meta.get("model_sha256") not in (None, package_sha256):
            raise ConfigError(
                f"{out} holds embeddings of another model (sha256 {str(table.meta.get('model_sha256'))[:12]}...); "
                "choose another --out, or delete it to start over"
            )
        check_resume(str(out), table.meta.get("scores", False), scores, "pass --restart to replace it (or choose another --out)")
        _check_windows(str(out), table.meta.get("windows"), windows)
        base = resume_base(table.meta.get("cwd"))
        for p, v in zip(table.paths, table.vectors):
            done[row_key(p, base)] = (p, v)
    elif not resume:
        shutil.rmtree(side["partial"], ignore_errors=True)
    chunks = _Chunks(side["partial"])
    owner = side["partial"] / "model.json"
    if owner.exists() and json.loads(owner.read_text()).get("model_sha256") != package_sha256:
        raise ConfigError(
            f"{side['partial']} holds unfinished embeddings of another model; delete it, or pass --restart, "
            "or choose another --out"
        )
    if owner.exists():
        check_resume(str(side["partial"]), json.loads(owner.read_text()).get("scores", False), scores,
                     "pass --restart to start over (or choose another --out)")
        _check_windows(str(side["partial"]), json.loads(owner.read_text()).get("windows"), windows)
        if not (resume and out_exists):
            base = resume_base(json.loads(owner.read_text()).get("cwd"))
    side["partial"].mkdir(parents=True, exist_ok=True)
    owner.write_text(json.dumps({"model_sha256": package_sha256, "windows": windows, "cwd": base,
                                 **({"scores": True} if scores else {})}))
    for p, v in zip(*chunks.read()):
        done[row_key(p, base)] = (p, v)
    return done, errors, chunks, base


def _write_output(out: Path, side: dict[str, Path], done: dict, errors: dict[str, str], embedder: Any, shard: Any,
                  report: EmbedReport, base: str | None = None) -> None:
    """Write the embeddings file (rows sorted by path) with its metadata and errors; drop the partial folder."""
    from musetag import __version__
    from musetag.inference.embed_scores import scores_meta

    package, scores = embedder.package, embedder.with_scores
    rows = sorted(done.values(), key=lambda pv: pv[0])
    vectors = np.stack([v for _, v in rows]) if rows else np.zeros((0, max(1, report.dim)), np.float32)
    meta = {
        "model": package.model_name,
        "model_args": package.model_args,
        "model_package": str(Path(package.path).resolve()) if package.path else None,
        "model_sha256": package.sha256,
        "layer": "forward_features" if embedder.layout is None else list(dict.fromkeys(r["layer"] for r in embedder.layout)),
        "pooling": "mean over the segments" if embedder.layout is None else "statistics over all frames of all segments",
        **({"layout": [{"backbone": package.model_name, **r} for r in embedder.layout]}
           if embedder.layout is not None else {}),
        "windows": embedder.windows,
        "segment": package.segment,
        "features": {k: v for k, v in package.features.items() if k not in ("mean", "std")},
        "shard": str(shard) if not shard.is_whole else None,
        "cwd": base or os.getcwd(),  # the folder the relative paths are relative to
        "musetag_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if rows:
        report.dim = int(vectors.shape[1])
    if scores:
        meta.update(scores_meta(embedder, report.dim))
    write_embeddings(out, [p for p, _ in rows], vectors, meta)
    _write_errors(side["errors"], errors)
    shutil.rmtree(side["partial"], ignore_errors=True)
