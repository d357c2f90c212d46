"""Similarity search over track embeddings, and "tracks that sound like this mood" over tag scores.

:class:`SimilarityIndex` holds one L2-normalised vector per track and answers cosine top-k queries.
Backends:

- ``"exact"``: numpy matrix product plus ``argpartition``; exact, no extra dependency, fine up to a
  few hundred thousand tracks (about 0.1 s per query per million 512-d vectors on one core).
- ``"faiss"`` (``pip install faiss-cpu``): HNSW graph over inner products of the normalised
  vectors; approximate, for millions of tracks.
- ``"hnswlib"`` (``pip install hnswlib``): the same with hnswlib's cosine space.
- ``"auto"`` (default): exact up to ``AUTO_EXACT_LIMIT`` tracks or when no ANN library is
  importable, otherwise faiss, then hnswlib.

:class:`MoodIndex` searches tag-score vectors (the output of ``musetag tag``): each tag's scores are
standardised over the catalogue (so that tags the model scores high everywhere do not dominate),
then a query is either a track's score vector (cosine) or a weighted set of tags (mean standardised
score). Nothing here is downloaded or trained.

One file on purpose (about 530 lines): the embedding index and the mood index share the catalogue
loading, standardisation and the query language of ``musetag similar``.
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musetag.errors import ConfigError, DatasetError

__all__ = [
    "Match",
    "SimilarityIndex",
    "MoodIndex",
    "available_backends",
    "load_index",
    "AUTO_EXACT_LIMIT",
]

AUTO_EXACT_LIMIT = 200_000
_BACKENDS = ("auto", "exact", "faiss", "hnswlib")


@dataclass(frozen=True)
class Match:
    """One search result: the track, its cosine similarity to the query, its rank (1 = closest)."""

    path: str
    score: float
    rank: int

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "path": self.path, "score": round(float(self.score), 6)}


def available_backends() -> list[str]:
    """Backends importable here (``exact`` always is)."""
    import importlib.util

    return ["exact", *(name for name in ("faiss", "hnswlib") if importlib.util.find_spec(name) is not None)]


def _import_faiss():
    import logging

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it logs every CPU-feature probe at INFO
    import faiss

    return faiss


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class SimilarityIndex:
    """Nearest-neighbour search over one vector per track.

    ``metric="cosine"`` (default, embeddings): ``score`` is the cosine similarity.
    ``metric="euclidean"`` (mood profiles, where magnitude matters): ``score`` is
    ``1 / (1 + distance)``. Either way higher is closer and ranks follow the score.

    >>> index = SimilarityIndex(vectors, paths)            # doctest: +SKIP
    >>> index.search(query_vector, k=10)                   # doctest: +SKIP
    [Match(path='a.mp3', score=0.97, rank=1), ...]
    """

    def __init__(
        self, vectors: np.ndarray, paths: Sequence[str], *, backend: str = "auto", metric: str = "cosine",
        meta: Mapping[str, Any] | None = None, hnsw_m: int = 32, ef_construction: int = 200, ef_search: int = 128,
    ) -> None:
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise DatasetError(f"embeddings must be a (tracks, dim) matrix, got shape {vectors.shape}")
        if len(paths) != len(vectors):
            raise DatasetError(f"{len(vectors)} vectors but {len(paths)} track names: the file list does not match")
        if not np.all(np.isfinite(vectors)):
            bad = [paths[i] for i in np.flatnonzero(~np.isfinite(vectors).all(axis=1))[:3]]
            raise DatasetError(f"embeddings contain NaN/inf (for example {bad}); re-embed those tracks")
        if backend not in _BACKENDS:
            raise ConfigError(f"backend={backend!r}: choose one of {', '.join(_BACKENDS)}")
        if metric not in ("cosine", "euclidean"):
            raise ConfigError(f"metric={metric!r}: choose cosine or euclidean")
        self.metric = metric
        self.paths = [str(p) for p in paths]
        self.vectors = self._prepare(vectors)
        self.meta = dict(meta or {})
        self._row = {p: i for i, p in enumerate(self.paths)}
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.backend = self._choose_backend(backend)
        self._ann: Any = None
        if self.backend != "exact" and len(self.paths):
            self._ann = self._build_ann()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_embeddings(cls, path: str | os.PathLike, **kwargs: Any) -> SimilarityIndex:
        """Index an embeddings file written by ``musetag embed`` (``.npy`` or ``.parquet``)."""
        from musetag.inference.embeddings_file import read_embeddings

        table = read_embeddings(path)
        return cls(table.vectors, table.paths, meta={**table.meta, "source": str(path)}, **kwargs)

    def _choose_backend(self, backend: str) -> str:
        if backend == "exact" or (backend == "auto" and len(self.paths) <= AUTO_EXACT_LIMIT):
            return "exact"
        have = available_backends()
        if backend == "auto":
            for name in ("faiss", "hnswlib"):
                if name in have:
                    return name
            return "exact"
        if backend not in have:
            raise ConfigError(
                f"backend {backend!r} is not installed: pip install {'faiss-cpu' if backend == 'faiss' else backend}, "
                "or use --backend exact"
            )
        return backend

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        return _normalise(x) if self.metric == "cosine" else np.ascontiguousarray(x, dtype=np.float32)

    def _build_ann(self, stored: Path | None = None) -> Any:
        dim = self.dim
        if self.backend == "faiss":
            faiss = _import_faiss()

            if stored is not None:
                index = faiss.read_index(str(stored))
            else:
                faiss_metric = faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2
                index = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss_metric)
                index.hnsw.efConstruction = self.ef_construction
                index.add(np.ascontiguousarray(self.vectors))
            index.hnsw.efSearch = self.ef_search
            return index
        import hnswlib

        index = hnswlib.Index(space="cosine" if self.metric == "cosine" else "l2", dim=dim)
        if stored is not None:
            index.load_index(str(stored), max_elements=len(self.paths))
        else:
            index.init_index(max_elements=len(self.paths), ef_construction=self.ef_construction, M=self.hnsw_m)
            index.add_items(self.vectors, np.arange(len(self.paths)))
        index.set_ef(self.ef_search)
        return index

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.paths)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __contains__(self, path: object) -> bool:
        return path in self._row

    def find(self, path: str | os.PathLike) -> str | None:
        """The index's name for a file given by any spelling of its path (relative, absolute), or None."""
        text = str(path)
        if text in self._row:
            return text
        if getattr(self, "_abs", None) is None:
            self._abs = {os.path.normcase(os.path.abspath(p)): p for p in self.paths}
        return self._abs.get(os.path.normcase(os.path.abspath(text)))

    def vector(self, path: str) -> np.ndarray:
        """The stored (normalised) vector of a track of the index."""
        try:
            return self.vectors[self._row[path]]
        except KeyError:
            raise DatasetError(f"{path!r} is not in the index ({len(self)} tracks)") from None

    def search(
        self, query: np.ndarray, k: int = 10, *, exclude: Sequence[str] | str | None = None,
    ) -> list[Match] | list[list[Match]]:
        """The ``k`` tracks closest (cosine) to ``query``: one vector ``(dim,)`` -> list of matches, a
        batch ``(n, dim)`` -> one list per row. ``exclude`` drops tracks (e.g. the query itself)."""
        q = np.asarray(query, dtype=np.float32)
        single = q.ndim == 1
        q2 = q[None] if single else q
        if q2.ndim != 2 or q2.shape[1] != self.dim:
            raise DatasetError(
                f"query has dimension {q2.shape[-1]} but the index holds {self.dim}-d embeddings: "
                "embed the query with the model that built the index"
            )
        if k < 1:
            raise ConfigError(f"k={k}: ask for at least one neighbour")
        excluded = {exclude} if isinstance(exclude, str) else set(exclude or ())
        n = len(self)
        if n == 0:
            return [] if single else [[] for _ in range(len(q2))]
        want = min(n, k + len(excluded))
        q2 = self._prepare(q2)
        if self.backend == "exact":
            idx, sims = self._exact(q2, want)
        elif self.backend == "faiss":
            sims, idx = self._ann.search(np.ascontiguousarray(q2), want)
            if self.metric == "euclidean":  # faiss returns squared L2 distances
                sims = 1.0 / (1.0 + np.sqrt(np.maximum(sims, 0)))
        else:
            self._ann.set_ef(max(self.ef_search, want))
            idx, dist = self._ann.knn_query(q2, k=want)
            sims = 1.0 - dist if self.metric == "cosine" else 1.0 / (1.0 + np.sqrt(np.maximum(dist, 0)))
        results = []
        for row_idx, row_sims in zip(idx, sims):
            matches: list[Match] = []
            for i, s in zip(row_idx, row_sims):
                if i < 0:  # faiss pads with -1 when the graph returns fewer
                    continue
                p = self.paths[int(i)]
                if p in excluded:
                    continue
                matches.append(Match(path=p, score=float(s), rank=len(matches) + 1))
                if len(matches) == k:
                    break
            results.append(matches)
        return results[0] if single else results

    def search_track(self, path: str, k: int = 10) -> list[Match]:
        """Neighbours of a track already in the index (the track itself excluded)."""
        return self.search(self.vector(path), k, exclude=[path])  # type: ignore[return-value]

    def _exact(self, q: np.ndarray, want: int, block: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
        # Blocked matmul so memory stays bounded for large catalogues: keep the running top-`want`.
        best_idx = np.zeros((len(q), 0), dtype=np.int64)
        best_sim = np.zeros((len(q), 0), dtype=np.float32)
        for start in range(0, len(self), block):
            part_vecs = self.vectors[start : start + block]
            sims = q @ part_vecs.T  # (queries, block)
            if self.metric == "euclidean":
                d2 = (q * q).sum(1, keepdims=True) + (part_vecs * part_vecs).sum(1)[None] - 2 * sims
                sims = 1.0 / (1.0 + np.sqrt(np.maximum(d2, 0)))
            take = min(want, sims.shape[1])
            part = np.argpartition(-sims, take - 1, axis=1)[:, :take]
            cand_sim = np.concatenate([best_sim, np.take_along_axis(sims, part, 1)], axis=1)
            cand_idx = np.concatenate([best_idx, part + start], axis=1)
            keep = np.argsort(-cand_sim, axis=1, kind="stable")[:, :want]
            best_sim = np.take_along_axis(cand_sim, keep, 1)
            best_idx = np.take_along_axis(cand_idx, keep, 1)
        return best_idx, best_sim

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``vectors.npy``, ``tracks.txt``, ``index.json`` (and the ANN graph) to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self.vectors)
        (folder / "tracks.txt").write_text("".join(p + "\n" for p in self.paths), encoding="utf-8")
        info = {
            "format": "musetag-similarity-index", "version": 1, "backend": self.backend, "metric": self.metric,
            "tracks": len(self),
            "dim": self.dim, "hnsw_m": self.hnsw_m, "ef_construction": self.ef_construction,
            "ef_search": self.ef_search, "meta": self.meta,
        }
        if self._ann is not None:
            if self.backend == "faiss":
                faiss = _import_faiss()

                faiss.write_index(self._ann, str(folder / "ann.faiss"))
            else:
                self._ann.save_index(str(folder / "ann.hnsw"))
        (folder / "index.json").write_text(json.dumps(info, indent=1, ensure_ascii=False), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike, *, backend: str | None = None) -> SimilarityIndex:
        """Load a folder written by :meth:`save`, or index an embeddings file on the fly."""
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"{path}: no such index; build one with `musetag embed MODEL AUDIO... --out {path}`")
        if path.is_file():
            return cls.from_embeddings(path, backend=backend or "auto")
        info_path = path / "index.json"
        if not info_path.exists():
            raise DatasetError(f"{path}: not a musetag index folder (no index.json); point to the embeddings file")
        info = json.loads(info_path.read_text(encoding="utf-8"))
        vectors = np.load(path / "vectors.npy", mmap_mode="r")
        paths = (path / "tracks.txt").read_text(encoding="utf-8").splitlines()
        want = backend or info.get("backend", "exact")
        self = cls.__new__(cls)
        self.paths, self.vectors, self.meta = paths, np.asarray(vectors, dtype=np.float32), info.get("meta", {})
        self.metric = info.get("metric", "cosine")
        if len(self.paths) != len(self.vectors):
            raise DatasetError(f"{path}: {len(self.vectors)} vectors but {len(self.paths)} tracks; rebuild the index")
        self._row = {p: i for i, p in enumerate(self.paths)}
        self.hnsw_m, self.ef_construction = info.get("hnsw_m", 32), info.get("ef_construction", 200)
        self.ef_search = info.get("ef_search", 128)
        self.backend = self._choose_backend(want)
        self._ann = None
        if self.backend != "exact" and len(self.paths):
            stored = path / ("ann.faiss" if self.backend == "faiss" else "ann.hnsw")
            self._ann = self._build_ann(stored if stored.exists() else None)
        return self


def load_index(path: str | os.PathLike, *, backend: str | None = None) -> SimilarityIndex:
    """Shorthand for :meth:`SimilarityIndex.load`."""
    return SimilarityIndex.load(path, backend=backend)


# ------------------------------------------------------------------------------------------- moods


class MoodIndex:
    """Search tracks by their tag scores: "tracks that sound like this mood".

    ``scores`` is the ``(tracks, tags)`` matrix of tag probabilities written by ``musetag tag``.
    Each tag column is standardised (z-score over the catalogue). Queries:

    - :meth:`search_tags` with ``{"happy": 1.0, "energetic": 0.5}`` or ``["calm", "relaxing"]``:
      ranks tracks by the weighted mean of their standardised scores for those tags (a negative
      weight means "not this mood");
    - :meth:`search_scores` with another track's score vector (for example a query audio tagged by
      the same model): Euclidean distance between standardised score vectors (not cosine: a track
      scoring near the catalogue average on everything would otherwise match any direction).
    """

    def __init__(self, scores: np.ndarray, paths: Sequence[str], tags: Sequence[str], *, backend: str = "auto") -> None:
        scores = np.asarray(scores, dtype=np.float32)
        if scores.ndim != 2 or scores.shape[1] != len(tags):
            raise DatasetError(f"tag scores of shape {scores.shape} do not match {len(tags)} tags")
        self.tags = [str(t) for t in tags]
        self.raw = scores
        self.mean = scores.mean(axis=0) if len(scores) else np.zeros(len(tags), np.float32)
        self.std = scores.std(axis=0) if len(scores) else np.ones(len(tags), np.float32)
        self.std = np.where(self.std > 1e-6, self.std, 1.0).astype(np.float32)
        self.z = (scores - self.mean) / self.std
        self.index = SimilarityIndex(self.z, paths, backend=backend, metric="euclidean")
        self.paths = self.index.paths

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs: Any) -> MoodIndex:
        """Read a tag-score table (``.csv``/``.tsv``/``.parquet``/``.jsonl``/``.json``: a track column and
        one numeric column per tag), or an embeddings file of ``musetag embed --with-scores``."""
        paths, tags, scores = read_tag_scores(path)
        return cls(scores, paths, tags, **kwargs)

    def _tag_column(self, tag: str) -> int:
        if tag in self.tags:
            return self.tags.index(tag)
        # accept the short form of prefixed tags: "happy" for "mood/theme---happy"
        hits = [i for i, t in enumerate(self.tags) if t.rsplit("---", 1)[-1] == tag or t.rsplit("/", 1)[-1] == tag]
        if len(hits) == 1:
            return hits[0]
        raise ConfigError(
            f"unknown tag {tag!r}; this index knows {len(self.tags)} tags, e.g. {', '.join(self.tags[:8])}"
        )

    def search_tags(self, tags: Mapping[str, float] | Sequence[str] | str, k: int = 10,
                    flag: str = "--tags") -> list[Match]:
        """Tracks scoring highest on these moods, relative to the catalogue (errors spell tags as ``flag``)."""
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        weights = dict(tags) if isinstance(tags, Mapping) else {t: 1.0 for t in tags}
        if not weights:
            raise ConfigError(f"give at least one tag, for example {_spelt(flag, 'happy,energetic')}")
        w = np.zeros(len(self.tags), np.float32)
        for tag, weight in weights.items():
            w[self._tag_column(tag)] += float(weight)
        total = float(np.abs(w).sum())
        if not total > 0:  # every weight 0 (happy:0, or happy,-happy): nothing to rank by
            given = ",".join(f"{t}:{v:g}" for t, v in weights.items())
            raise ConfigError(f"the tag weights are all zero ({_spelt(flag, given)}); give at least one non-zero "
                              f"weight, for example {_spelt(flag, 'happy')} or {_spelt(flag, 'happy:2,-sad')}")
        score = self.z @ w / total
        k = min(k, len(score))
        top = np.argsort(-score, kind="stable")[:k]
        return [Match(path=self.paths[i], score=float(score[i]), rank=r + 1) for r, i in enumerate(top)]

    def search_scores(self, scores: np.ndarray, k: int = 10, *, exclude: Sequence[str] | str | None = None) -> list[Match]:
        """Tracks whose mood profile (standardised tag scores) is closest to ``scores``."""
        s = np.asarray(scores, dtype=np.float32)
        if s.shape != (len(self.tags),):
            raise DatasetError(f"score vector has shape {s.shape}, the index has {len(self.tags)} tags")
        return self.index.search((s - self.mean) / self.std, k, exclude=exclude)  # type: ignore[return-value]

    def search_track(self, path: str, k: int = 10) -> list[Match]:
        return self.index.search_track(path, k)


def read_tag_scores(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Read a table of tag scores: returns (track paths, tag names, scores ``(tracks, tags)``).

    The track column is the first of path/file/track/filename/id; every other numeric column is a
    tag, except bookkeeping columns (duration, segments, seconds, error...). An embeddings file of
    ``musetag embed --with-scores`` (``.npy`` or ``.parquet``) gives the tag scores appended to its
    vectors (its metadata names them: ``feature_dim``, ``score_tags``).
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file; write tag scores with `musetag tag MODEL AUDIO... --out {path}`")
    ext = path.suffix.lower()
    embedded = _embedded_tag_scores(path)
    if embedded is not None:
        return embedded
    try:
        if ext == ".parquet":
            df = pd.read_parquet(path)
        elif ext in (".csv", ".tsv"):
            # a file name that is not UTF-8 was written as its own bytes: shown with \\xff escapes
            text = path.read_bytes().decode("utf-8", "backslashreplace")
            df = pd.read_csv(io.StringIO(text), sep="\t" if ext == ".tsv" else ",")
        elif ext == ".jsonl":
            df = pd.read_json(path, lines=True)
        elif ext == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            df = pd.DataFrame(data if isinstance(data, list) else [{"path": k, **v} for k, v in data.items()])
        else:
            raise ConfigError(f"{path}: tag scores must be .csv, .tsv, .jsonl, .json or .parquet")
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{path}: cannot read tag scores ({exc})") from None
    if isinstance(df.iloc[0].get("scores") if len(df) else None, dict):  # nested {"scores": {tag: p}}
        nested = pd.DataFrame(list(df["scores"]))
        df = pd.concat([df.drop(columns=["scores"]), nested], axis=1)
    key = next((c for c in ("path", "file", "track", "filename", "id") if c in df.columns), None)
    if key is None:
        raise DatasetError(f"{path}: no track column (path, file, track, filename or id)")
    if "status" in df.columns:  # musetag tag: failed tracks have a status other than "ok"
        df = df[df["status"].astype(str) == "ok"]
    skip = {key, "duration", "seconds", "segments", "n_segments", "error", "status", "sample_rate", "model",
            "top_tags", "decisions", "warnings"}
    tags = [c for c in df.columns
            if c not in skip and pd.api.types.is_numeric_dtype(df[c]) and not df[c].isna().all()]
    if not tags:
        raise DatasetError(f"{path}: no numeric tag-score columns; write scores (not only decisions) with musetag tag")
    df = df.dropna(subset=tags)
    return [str(p) for p in df[key]], tags, df[tags].to_numpy(np.float32)


def _is_embeddings_file(path: Path) -> bool:
    """Whether ``path`` is a ``musetag embed`` output: a ``.npy`` matrix, or a Parquet file with an
    ``embedding`` column (a ``musetag tag`` Parquet table has one column per tag instead)."""
    ext = path.suffix.lower()
    if ext == ".npy":
        return True
    if ext != ".parquet":
        return False
    try:
        import pyarrow.parquet as pq

        return "embedding" in pq.read_schema(path).names
    except Exception:  # noqa: BLE001 - not readable as Parquet here: let the table reader name the problem
        return False


def _embedded_tag_scores(path: Path) -> tuple[list[str], list[str], np.ndarray] | None:
    """The tag scores that ``musetag embed --with-scores`` appended to an embeddings file, as
    :func:`read_tag_scores` returns them; None when ``path`` is not an embeddings file. An embeddings
    file without scores is refused with what to run instead."""
    if not _is_embeddings_file(path):
        return None
    from musetag.inference.embeddings_file import read_embeddings

    table = read_embeddings(path)
    tags = [str(t) for t in table.meta.get("score_tags") or []]
    feature_dim = table.meta.get("feature_dim")
    if not (table.meta.get("scores") and tags and isinstance(feature_dim, int)):
        raise DatasetError(
            f"{path} is an embeddings file (from `musetag embed`) without tag scores, and --tags/--mood search tag "
            f"scores: write them with `musetag tag MODEL AUDIO... --out scores.csv` and search that file, or embed with "
            "`musetag embed MODEL AUDIO... --with-scores`; without --tags/--mood, `musetag similar` searches the "
            "embeddings themselves"
        )
    if table.vectors.shape[1] != feature_dim + len(tags):
        raise DatasetError(
            f"{path}: its metadata says {feature_dim} embedding columns and {len(tags)} tag scores, but the vectors have "
            f"{table.vectors.shape[1]} columns; the side files do not belong to it: re-run musetag embed --with-scores"
        )
    return list(table.paths), tags, np.ascontiguousarray(table.vectors[:, feature_dim:], dtype=np.float32)


# ------------------------------------------------------------------------------------------- queries


def _spelt(flag: str, value: str) -> str:
    """How the user wrote it: ``--tags happy`` (the CLI), ``tags=happy`` (the service's query)."""
    return f"{flag}{value}" if flag.endswith("=") else f"{flag} {value}"


def parse_tag_weights(text: str, flag: str = "--tags") -> dict[str, float]:
    """``"happy,-sad,calm:0.5"`` -> ``{"happy": 1.0, "sad": -1.0, "calm": 0.5}``; errors spell the input as
    ``flag`` does (``--tags``, or ``tags=`` for the service)."""
    weights: dict[str, float] = {}
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        sign = -1.0 if item.startswith("-") else 1.0
        item = item.lstrip("+-")
        name, sep, w = item.rpartition(":")
        if not sep:
            name, w = item, "1"
        try:
            weight = float(w)
        except ValueError:
            raise ConfigError(f"{_spelt(flag, repr(text))}: weight {w!r} of {name!r} is not a number (write "
                              "tag:0.5)") from None
        if not np.isfinite(weight):
            raise ConfigError(f"{_spelt(flag, repr(text))}: weight {w!r} of {name!r} is not a finite number (write "
                              "tag:0.5)")
        weights[name] = weights.get(name, 0.0) + sign * weight
    if not weights:
        raise ConfigError(f"{flag.rstrip('=')} is empty: give tags such as {_spelt(flag, 'happy,energetic')} or "
                          f"{_spelt(flag, 'happy,-sad')}")
    return weights


def find_similar(
    index: SimilarityIndex, query: Any, *, k: int = 10, embedder: Any = None, sample_rate: int | None = None,
) -> list[Match]:
    """Tracks of ``index`` closest to ``query``: a track of the index (its stored vector is used and
    it is left out of the results), or audio (path, bytes, file object or array with
    ``sample_rate``) embedded with ``embedder`` (:func:`musetag.inference.embed.load_embedder`; by default the
    model package recorded in the index)."""
    if isinstance(query, (str, os.PathLike)):
        known = index.find(query)
        if known is not None:
            return index.search_track(known, k)
    if embedder is None:
        embedder = embedder_for(index)
    vector = embedder.embed(query, sample_rate)
    exclude = None
    return index.search(vector, k, exclude=exclude)  # type: ignore[return-value]


def embedder_for(index: SimilarityIndex, model: str | os.PathLike | None = None, **kwargs: Any) -> Any:
    """The :class:`~musetag.inference.embed.Embedder` of the model that built ``index`` (or ``model``), after
    checking that its checksum is the one recorded in the index."""
    from musetag.inference.embed import load_embedder

    path = model or index.meta.get("model_package")
    if not path:
        raise ConfigError("the index does not record its model package; pass it with --model PACKAGE")
    if not Path(path).exists():
        raise ConfigError(
            f"the index was built with the model package {path}, which is not here; pass its new place with --model"
        )
    kwargs.setdefault("scores", bool(index.meta.get("scores")))  # an index with tag scores: queries get them too
    kwargs.setdefault("windows", index.meta.get("windows") or "upstream")  # queries cut as the index's tracks were
    embedder = load_embedder(path, **kwargs)
    recorded = index.meta.get("model_sha256")
    if recorded and embedder.package.sha256 != recorded:
        raise ConfigError(
            f"model package {path} is not the one that built the index (sha256 {embedder.package.sha256[:12]}... vs "
            f"{str(recorded)[:12]}...); embed the catalogue again with this model or pass the right --model"
        )
    return embedder


class SimilarityService:
    """What ``POST /v1/similar`` of ``musetag serve`` runs: an index built by ``musetag embed`` with the
    served model package, and an embedder of that package for the uploaded audio's segments."""

    def __init__(self, index_path: str | os.PathLike, package: Any, *, backend: str | None = None,
                 device: str = "cpu") -> None:
        from musetag.inference.embed import load_embedder

        self.path = Path(index_path)
        self.index = SimilarityIndex.load(index_path, backend=backend)
        recorded = self.index.meta.get("model_sha256")
        if recorded and recorded != package.sha256:
            raise ConfigError(
                f"--similar-index {index_path} was embedded with another model (sha256 {str(recorded)[:12]}...) than "
                f"the served package {package.path} ({package.sha256[:12]}...); embed the catalogue with this package"
            )
        self.embedder = load_embedder(package, device=device, scores=bool(self.index.meta.get("scores")))

    def search_segments(self, segments: np.ndarray, k: int = 10) -> list[Match]:
        """Neighbours of a track given as the served model's feature windows (what the decoders return)."""
        vector = self.embedder.score_segments(segments).scores_array
        return self.index.search(vector, k)  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        return {"index": str(self.path), "tracks": len(self.index), "dim": self.index.dim,
                "backend": self.index.backend}
