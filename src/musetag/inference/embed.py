"""Track embeddings: one vector per track from a trained model, for search and downstream models.

The vector is the model's pooled penultimate layer (``forward_features``) computed on the same
segments the tagger uses (the package's segment length and hop) and averaged over them, so that
two tracks are compared on what the tagger looked at. ``scores=True`` (``--with-scores``) appends the
track's tag scores as the tagger gives them (:mod:`musetag.inference.embed_scores`).

Files (chosen by the extension of ``--out``):

``embeddings.npy``
    float32 matrix ``(tracks, dim)``; beside it ``embeddings.tracks.csv`` (one ``path`` per row, in
    the matrix's order) and ``embeddings.meta.json`` (model, its checksum, dim, shard...).
``embeddings.parquet``
    columns ``path`` (string) and ``embedding`` (fixed-size list of float32); the metadata is stored
    in the Parquet schema under the key ``musetag``. Needs ``pyarrow``.

Both list failed tracks in ``embeddings.errors.csv`` (``path, error``). A run writes finished
tracks to ``<out>.partial/`` every ``flush_every`` tracks; an interrupted run resumes from there
(and from an existing output) and only embeds what is missing. Rows are sorted by path.
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

from musetag.errors import AudioError, ConfigError, MusetagError
from musetag.inference.embeddings_file import (  # noqa: F401 - the file format lives there; re-exported
    _EXTS, FORMAT, FORMAT_VERSION, EmbeddingTable, _atomic_replace, _check_ext, _pyarrow, read_embeddings,
    side_files, write_embeddings,
)
from musetag.tag.writers import check_output_file

log = logging.getLogger(__name__)

__all__ = [
    "Embedder", "EmbeddingTable", "EmbedReport", "embed_files", "load_embedder", "read_embeddings", "side_files",
    "write_embeddings",
]

# ------------------------------------------------------------------------------------ extraction


class MeanVector:
    """A track's embedding: the mean of its windows' ``forward_features`` vectors, accumulated batch by
    batch (``add``) in float64; ``result()`` is float32."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def add(self, feats: np.ndarray) -> None:
        part = feats.astype(np.float64).sum(0)
        self.total = part if self.total is None else self.total + part
        self.count += len(feats)

    def mean(self, what: str = "embed") -> np.ndarray:
        if self.total is None:
            raise AudioError(f"no segments to {what}")
        return (self.total / self.count).astype(np.float32)

    def result(self) -> np.ndarray:
        return self.mean()


def _embedder_class():
    """:class:`Embedder` is built on first use so that importing this module does not load torch."""
    if "Embedder" in globals():
        return globals()["Embedder"]
    from musetag.inference.tagger import Tagger, _TorchRunner

    class _FeatureRunner(_TorchRunner):
        def __call__(self, batch: np.ndarray) -> np.ndarray:
            torch = self.torch
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
                return self.model.forward_features(x).float().cpu().numpy()

    class _Embedder(Tagger):
        """A :class:`~musetag.tag.Tagger` whose network output is the pooled penultimate layer.

        It decodes, computes features, segments (streaming long files) and parallelises exactly as
        the tagger; each segment's ``forward_features`` vector is averaged over the track.
        ``embed(source)`` returns that vector; ``tag_many`` yields results whose ``scores_array``
        is the vector (``status`` as for tagging). ``backend="onnx"`` reads the ``embedding`` output
        of the graph ``musetag export`` writes (onnxruntime; same front end). ``scores=True``: the
        vector is followed by the track's tag scores as the tagger gives them
        (:mod:`musetag.inference.embed_scores`; ``score_tags`` names those columns).
        """

        onnx_output = "embedding"

        def __init__(self, package, *, batch_size: int = 32, device: str = "cpu", backend: str = "torch",
                     scores: bool = False, **kwargs: Any) -> None:
            super().__init__(package, backend=backend, batch_size=batch_size, device=device, **kwargs)
            if backend == "onnx":
                self.feature_dim = int(self.runner.width)
            else:
                if not hasattr(self.model, "forward_features"):
                    raise MusetagError(f"model {package.model_name!r} has no forward_features(); it cannot embed")
                self.runner = _FeatureRunner(self.model, device)
                self.feature_dim = int(getattr(self.model, "num_features", 0))
            self.with_scores = bool(scores)
            self.score_tags = list(package.tags) if scores else []
            if scores:
                from musetag.inference import embed_scores

                embed_scores.attach(self, device)
            self.tags = []

        def _accumulator(self):
            if self.with_scores:
                from musetag.inference import embed_scores

                return embed_scores.accumulator(self)
            return MeanVector()

        def embed(self, source: Any, sample_rate: int | None = None) -> np.ndarray:
            """The embedding of one file (path, bytes, file object) or array (``sample_rate`` needed)."""
            return self.tag(source, sample_rate).scores_array

        @property
        def dim(self) -> int:
            return self.feature_dim + len(self.score_tags)

    _Embedder.__name__ = _Embedder.__qualname__ = "Embedder"
    _Embedder.__module__ = __name__
    globals()["Embedder"] = _Embedder
    return _Embedder


def __getattr__(name: str) -> Any:
    if name == "Embedder":
        return _embedder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_embedder(model: Any, *, batch_size: int = 32, device: str = "cpu", scores: bool | None = None,
                  **kwargs: Any):
    """An :class:`Embedder` from a package path (or a loaded ``ModelPackage``, or an Embedder);
    ``backend="onnx"`` (and ``onnx_path=``) as for :class:`~musetag.tag.Tagger`; ``scores=True``
    appends the track's tag scores to each vector (:mod:`musetag.inference.embed_scores`)."""
    cls = _embedder_class()
    if isinstance(model, cls):
        if scores is not None and bool(scores) != model.with_scores:
            raise ConfigError(f"an Embedder built with scores={model.with_scores} was given with scores={bool(scores)}; "
                              "pass the package path, or an Embedder built with the same setting")
        return model
    kwargs["scores"] = bool(scores)
    from musetag.inference.package import ModelPackage, load_package

    package = model if isinstance(model, ModelPackage) else load_package(model)
    return cls(package, batch_size=batch_size, device=device, **kwargs)


@dataclass
class EmbedReport:
    """What :func:`embed_files` did."""

    out: Path
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    dim: int = 0

    @property
    def tracks_per_second(self) -> float:
        return self.ok / self.wall_seconds if self.wall_seconds else 0.0

    def summary(self) -> str:
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        return (
            f"{self.out}: {self.ok} embedded ({self.dim}-d), {self.failed} failed, {self.skipped} already done "
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
) -> EmbedReport:
    """Embed every audio file under ``paths`` into ``out`` (``.npy`` or ``.parquet``).

    ``model``: a model package (path) or an :class:`Embedder`. Files and folders are listed as
    ``musetag tag`` lists them; ``shard`` (``"I/N"`` or a :class:`musetag.tag.shard.Shard`) keeps this
    worker's part. Failed files go to ``<name>.errors.csv`` and never stop the run; finished tracks
    are saved to ``<out>.partial/`` every ``flush_every`` tracks, so a killed run resumes where it
    stopped (``resume=False`` starts over); ``retry_errors`` embeds failed files again. ``scores``:
    append each track's tag scores (``--with-scores``; None: as ``model``, an Embedder, was built, else
    no); an output or partial run made with the other setting is refused, never mixed.
    """
    from tqdm.auto import tqdm

    from musetag import __version__
    from musetag.inference.embed_scores import check_resume, scores_meta
    from musetag.tag.shard import Shard, collect_shard_files, parse_shard

    out = Path(out)
    _check_ext(out)
    out_exists = check_output_file(out)
    if out.suffix.lower() == ".parquet":
        _pyarrow()
    shard = shard if isinstance(shard, Shard) else parse_shard(shard)
    embedder = load_embedder(model, batch_size=batch_size, device=device, backend=backend, scores=scores)
    scores = embedder.with_scores
    package = embedder.package
    side = side_files(out)
    files = collect_shard_files(paths, shard, recursive=recursive)
    report = EmbedReport(out=out, total=len(files), dim=embedder.dim)

    done: dict[str, tuple[str, np.ndarray]] = {}  # abspath -> (path as listed, vector)
    errors = _read_errors(side["errors"]) if resume else {}
    if retry_errors:
        errors = {}
    if resume and out_exists:
        table = read_embeddings(out)
        if table.meta.get("model_sha256") not in (None, package.sha256):
            raise ConfigError(
                f"{out} holds embeddings of another model (sha256 {str(table.meta.get('model_sha256'))[:12]}...); "
                "choose another --out, or delete it to start over"
            )
        check_resume(str(out), table.meta.get("scores", False), scores, "pass --restart to replace it (or choose another --out)")
        for p, v in zip(table.paths, table.vectors):
            done[os.path.abspath(p)] = (p, v)
    elif not resume:
        shutil.rmtree(side["partial"], ignore_errors=True)
    chunks = _Chunks(side["partial"])
    owner = side["partial"] / "model.json"
    if owner.exists() and json.loads(owner.read_text()).get("model_sha256") != package.sha256:
        raise ConfigError(
            f"{side['partial']} holds unfinished embeddings of another model; delete it, or pass --restart, "
            "or choose another --out"
        )
    if owner.exists():
        check_resume(str(side["partial"]), json.loads(owner.read_text()).get("scores", False), scores,
                     "pass --restart to start over (or choose another --out)")
    side["partial"].mkdir(parents=True, exist_ok=True)
    owner.write_text(json.dumps({"model_sha256": package.sha256, **({"scores": True} if scores else {})}))
    for p, v in zip(*chunks.read()):
        done[os.path.abspath(p)] = (p, v)
    error_keys = {os.path.abspath(p) for p in errors}
    todo = [f for f in files if os.path.abspath(f) not in done and os.path.abspath(f) not in error_keys]
    report.skipped = len(files) - len(todo)
    if report.skipped:
        log.info("%s: %d of %d files already done, skipping them", out, report.skipped, len(files))

    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="file", disable=not progress, dynamic_ncols=True, desc="embed")
    try:
        for result in embedder.tag_many(todo, workers=workers):
            path = str(result.path)
            vec = result.scores_array
            if result.ok and vec is not None and np.all(np.isfinite(vec)):
                chunks.add(path, vec)
                done[os.path.abspath(path)] = (path, vec)
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

    rows = sorted(done.values(), key=lambda pv: pv[0])
    vectors = np.stack([v for _, v in rows]) if rows else np.zeros((0, max(1, report.dim)), np.float32)
    meta = {
        "model": package.model_name,
        "model_args": package.model_args,
        "model_package": str(Path(package.path).resolve()) if package.path else None,
        "model_sha256": package.sha256,
        "layer": "forward_features",
        "pooling": "mean over the tagger's segments",
        "segment": package.segment,
        "features": {k: v for k, v in package.features.items() if k not in ("mean", "std")},
        "shard": str(shard) if not shard.is_whole else None,
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
    return report
