"""``musetag tag ... --engine ray --out tags.parquet``: the rows of ``musetag tag`` as one parquet file.

Parquet cannot be appended to, so the run writes (and resumes from) a hidden JSON-lines file beside
the output, ``.NAME.partial.jsonl``, with the same :class:`~musetag.tag.writers.ResultWriter` as the
other formats; when every file has its row, the rows become ``NAME.parquet`` (written to a temporary
file and renamed over it) and the partial file is removed. Running again on an existing parquet file
reads its rows back first, so the files already tagged are skipped.

Columns: ``path``, ``status``, ``duration``, ``top_tags`` (list of ``{tag, score}``), ``decisions`` and
``warnings`` (lists of strings), then one float column per tag, null on error rows: the CSV layout,
typed. pandas, Spark, DuckDB and Ray Data read it as it is.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from musetag.tag.writers import FIXED_COLUMNS

__all__ = ["partial_path", "rows_to_table", "read_parquet_rows", "write_parquet_rows", "run_tag_parquet"]


def partial_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.partial.jsonl")


def rows_to_table(rows: list[dict[str, Any]], tags: list[str]):
    import pyarrow as pa

    top = pa.list_(pa.struct([("tag", pa.string()), ("score", pa.float64())]))
    columns = {
        "path": pa.array([r["path"] for r in rows], pa.string()),
        "status": pa.array([r["status"] for r in rows], pa.string()),
        "duration": pa.array([r.get("duration") for r in rows], pa.float64()),
        "top_tags": pa.array([r.get("top_tags") or [] for r in rows], top),
        "decisions": pa.array([list(r.get("decisions") or []) for r in rows], pa.list_(pa.string())),
        "warnings": pa.array([[str(w) for w in r.get("warnings") or []] for r in rows], pa.list_(pa.string())),
    }
    for tag in tags:
        columns[tag] = pa.array([(r.get("scores") or {}).get(tag) for r in rows], pa.float64())
    return pa.table(columns)


def read_parquet_rows(path: str | os.PathLike, tags: list[str]) -> list[dict[str, Any]]:
    """The rows of a parquet file this module wrote (as dicts, the shape ``musetag tag`` writes)."""
    import pyarrow.parquet as pq

    from musetag.errors import ConfigError

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(f"--out {path} exists but is not a parquet file ({exc}); choose another --out") from None
    names = table.column_names
    if tuple(names[: len(FIXED_COLUMNS)]) != FIXED_COLUMNS or names[len(FIXED_COLUMNS):] != list(tags):
        raise ConfigError(f"--out {path} is not a musetag tag output of this model (columns {names[:8]}...); "
                          "choose another --out or delete the file")
    rows = []
    for rec in table.to_pylist():
        scores = {t: rec[t] for t in tags if rec[t] is not None}
        rows.append({"path": rec["path"], "status": rec["status"], "duration": rec["duration"],
                     "top_tags": rec["top_tags"] or [], "decisions": rec["decisions"] or [],
                     "warnings": rec["warnings"] or [], "scores": scores})
    return rows


def write_parquet_rows(rows: list[dict[str, Any]], tags: list[str], out: str | os.PathLike) -> Path:
    import pyarrow.parquet as pq

    out = Path(out)
    from musetag.outputs import file_mode

    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, file_mode())  # as every other output (mkstemp makes 0o600)
    try:
        pq.write_table(rows_to_table(rows, tags), tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def run_tag_parquet(run_tag, model, sources, out, *, tags: list[str], retry_errors: bool = False, **kwargs: Any):
    """``run_tag`` (musetag.tag.ray_engine's) into ``out.parquet`` through a resumable partial file;
    ``tags``: the model's tags (the score columns)."""
    from musetag.tag.writers import ResultWriter, check_output_file, read_results

    out = Path(out)
    tags = list(tags)
    partial = partial_path(out)
    if check_output_file(out) and not partial.exists():
        with ResultWriter(partial, tags) as writer:  # the finished rows are "done" for this run
            for row in read_parquet_rows(out, tags):
                writer.write(row)
    summary = run_tag(model, sources, partial, retry_errors=retry_errors, **kwargs)
    write_parquet_rows(read_results(partial, tags), tags, out)
    partial.unlink()
    return summary
