"""The embeddings file format: write, read and locate the files of a ``musetag embed`` output.

``embeddings.npy`` (float32 ``(tracks, dim)``) with ``embeddings.tracks.csv`` and
``embeddings.meta.json`` beside it (vectors made with ``layers=`` record their ``layout``: backbone,
layer, statistic, offset, length of each slice), or ``embeddings.parquet`` (needs ``pyarrow``); see
:mod:`musetag.inference.embed`, which computes them, and :mod:`musetag.tag.merge`, which merges them.
A leaf module (no torch, nothing else of the tagging stage) so that both can import it.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musetag.errors import ConfigError, DatasetError

__all__ = ["EmbeddingTable", "read_embeddings", "side_files", "write_embeddings"]

FORMAT = "musetag-embeddings"
FORMAT_VERSION = 1
_EXTS = (".npy", ".parquet")


@dataclass
class EmbeddingTable:
    """Embeddings as read from a file: ``vectors[i]`` belongs to ``paths[i]``."""

    paths: list[str]
    vectors: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> list[dict[str, Any]] | None:
        """``[{"backbone", "layer", "stat", "offset", "length"}]`` of vectors made with ``layers=``
        (:mod:`musetag.inference.embed_layers`); None for the ``forward_features`` mean."""
        return self.meta.get("layout")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else int(self.meta.get("dim", 0))

    def __len__(self) -> int:
        return len(self.paths)


def _check_ext(out: Path, reading: bool = False) -> str:
    ext = out.suffix.lower()
    if ext not in _EXTS:
        if reading:  # `similar INDEX ...`, `label --import`: the file named is read, not written
            raise ConfigError(f"{out}: an embeddings index is a .npy file (with its side files) or a .parquet file, as "
                              f"`musetag embed --out` writes them, not {ext or 'a file without extension'}")
        raise ConfigError(f"--out {out}: embeddings are written as .npy (with side files) or .parquet, not {ext or 'no extension'}")
    return ext


def side_files(out: str | os.PathLike) -> dict[str, Path]:
    """The files that accompany an embeddings output: tracks list, metadata, errors, partial folder."""
    out = Path(out)
    stem = out.with_suffix("")
    return {
        "tracks": Path(f"{stem}.tracks.csv"),
        "meta": Path(f"{stem}.meta.json"),
        "errors": Path(f"{stem}.errors.csv"),
        "partial": Path(f"{out}.partial"),
    }


def _atomic_replace(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)


def write_embeddings(out: str | os.PathLike, paths: Sequence[str], vectors: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write an embeddings file (and, for ``.npy``, its side files) atomically."""
    out = Path(out)
    ext = _check_ext(out)
    vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if vectors.ndim != 2 or len(vectors) != len(paths):
        raise DatasetError(f"{out}: {len(paths)} tracks but vectors of shape {vectors.shape}")
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **meta, "dim": int(vectors.shape[1]), "tracks": len(paths)}
    out.parent.mkdir(parents=True, exist_ok=True)
    side = side_files(out)
    if ext == ".npy":
        tmp = out.with_name(f".{out.name}.tmp.npy")
        np.save(tmp, vectors)
        tmp_tracks = side["tracks"].with_name(f".{side['tracks'].name}.tmp")
        with open(tmp_tracks, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:  # names as bytes
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["path"])
            w.writerows([p] for p in paths)
        tmp_meta = side["meta"].with_name(f".{side['meta'].name}.tmp")
        tmp_meta.write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
        # the matrix last: a reader that finds it finds matching side files
        _atomic_replace(tmp_tracks, side["tracks"])
        _atomic_replace(tmp_meta, side["meta"])
        _atomic_replace(tmp, out)
        return out
    pa, pq = _pyarrow()
    dim = int(vectors.shape[1])
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim)
    # Parquet strings are UTF-8: a file name that is not is written with its odd bytes as \\xff escapes
    shown = [os.fsencode(p).decode("utf-8", "backslashreplace") for p in paths]
    table = pa.table({"path": pa.array(shown, type=pa.string()), "embedding": emb})
    table = table.replace_schema_metadata({"musetag": json.dumps(meta, ensure_ascii=False)})
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    _atomic_replace(tmp, out)
    return out


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("writing or reading .parquet needs pyarrow: pip install 'musetag[similarity]' (or pyarrow), "
                          "or use --out embeddings.npy") from None
    return pa, pq


def read_embeddings(path: str | os.PathLike) -> EmbeddingTable:
    """Read a ``.npy`` (with its side files) or ``.parquet`` embeddings file."""
    path = Path(path)
    ext = _check_ext(path, reading=True)
    if not path.exists():
        raise DatasetError(f"{path}: no such embeddings file; create it with `musetag embed MODEL AUDIO... --out {path}`")
    if ext == ".npy":
        side = side_files(path)
        if not side["tracks"].exists():
            raise DatasetError(
                f"{path}: its track list {side['tracks'].name} is missing, so rows cannot be matched to files; "
                "copy it along with the .npy or re-run musetag embed"
            )
        vectors = np.load(path)
        with open(side["tracks"], newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = list(csv.reader(f))
        paths = [r[0] for r in rows[1:]]
        meta = json.loads(side["meta"].read_text(encoding="utf-8")) if side["meta"].exists() else {}
    else:
        pa, pq = _pyarrow()
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - name the file
            raise DatasetError(f"{path}: not a readable Parquet file ({exc}); re-run musetag embed") from None
        if "path" not in table.column_names or "embedding" not in table.column_names:
            raise DatasetError(f"{path}: expected columns 'path' and 'embedding', found {table.column_names}")
        paths = table.column("path").to_pylist()
        col = table.column("embedding").combine_chunks()
        dim = col.type.list_size if hasattr(col.type, "list_size") else None
        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        if dim is None:
            dim = len(flat) // max(1, len(paths))
        vectors = flat.reshape(len(paths), dim) if len(paths) else np.zeros((0, dim), np.float32)
        raw = (table.schema.metadata or {}).get(b"musetag")
        meta = json.loads(raw) if raw else {}
    if vectors.ndim != 2 or len(vectors) != len(paths):
        raise DatasetError(f"{path}: {len(paths)} tracks listed but {vectors.shape} vectors; the files do not belong together")
    return EmbeddingTable(paths=paths, vectors=vectors.astype(np.float32, copy=False), meta=meta)
