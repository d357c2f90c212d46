"""``musetag merge``: the outputs of sharded ``musetag tag`` / ``musetag embed`` runs (:mod:`musetag.tag.shard`)
into one file, refusing to keep two different results for one track or to join outputs of different models."""
from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from musetag.errors import ConfigError, DatasetError

__all__ = ["MergeReport", "errors_path", "merge_outputs"]


@dataclass
class MergeReport:
    """What :func:`merge_outputs` did."""

    out: Path
    inputs: list[Path]
    rows: int
    per_input: dict[str, int]
    identical_duplicates: int
    conflicts_resolved: int
    failures_replaced: int = 0
    errors_rows: int = 0

    def summary(self) -> str:
        text = f"merged {len(self.inputs)} files into {self.out}: {self.rows} tracks"
        if self.identical_duplicates:
            text += f", {self.identical_duplicates} identical duplicate rows dropped"
        if self.failures_replaced:
            text += f", {self.failures_replaced} failed tracks replaced by their success in another shard"
        if self.conflicts_resolved:
            text += f", {self.conflicts_resolved} conflicting duplicates resolved by --keep"
        if self.errors_rows:
            text += f", {self.errors_rows} error records"
        return text


_KEY_CANDIDATES = ("path", "file", "track", "filename", "id")


def merge_outputs(
    inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *, key: str | None = None,
    keep: str = "error", sort: bool = True,
) -> MergeReport:
    """Merge the outputs of sharded ``musetag tag`` / ``musetag embed`` runs into one file.

    Formats follow the extension of ``out`` (all inputs must share it): ``.csv``, ``.tsv``,
    ``.jsonl``, ``.json`` (list of records, or an object keyed by track), embeddings ``.npy``
    (with their ``.tracks.csv``/``.meta.json`` side files) and ``.parquet``. Rows are keyed by
    ``key`` (default: the first of path/file/track/filename/id present). A track present in two
    inputs with identical results is kept once; with different results the merge stops and names
    both files, unless ``keep`` is ``"first"`` or ``"last"``. Side files listing failed tracks
    (``<name>.errors.csv``) are merged too, minus tracks that succeeded in another shard. Rows are
    sorted by key so the merge is independent of the order of ``inputs``.
    """
    if keep not in ("error", "first", "last"):
        raise ConfigError(f"keep={keep!r}: use 'error', 'first' or 'last'")
    paths = _drop_run_records([Path(p) for p in inputs])
    if not paths:
        raise ConfigError("nothing to merge: give at least one sharded output file")
    out = Path(out)
    kind = _output_kind(out)
    for p in paths:
        if not p.exists():
            raise DatasetError(f"{p}: no such file; check the shard outputs (did that shard finish?)")
        if _output_kind(p) != kind:
            raise ConfigError(f"{p}: cannot merge this {_output_kind(p)} file into {out} ({kind}); give files of one format")
        if p.resolve() == out.resolve():
            raise ConfigError(f"{out} is also an input; write the merge to a new file")
    from musetag.outputs import check_writable

    check_writable(out)  # an unwritable --out is refused before the inputs are read
    if kind == "embeddings":
        from musetag.inference import embeddings_file as _embed

        tables = [_embed.read_embeddings(p) for p in paths]
        records = [
            [{"path": path, "_vector": vec} for path, vec in zip(t.paths, t.vectors)] for t in tables
        ]
        merged, stats = _merge_records(records, paths, "path", keep, sort, vector=True)
        meta = _merge_meta([t.meta for t in tables], paths)
        import numpy as np

        vectors = np.stack([r["_vector"] for r in merged]) if merged else np.zeros((0, tables[0].dim), "float32")
        with _naming(out):
            _embed.write_embeddings(out, [r["path"] for r in merged], vectors, meta)
    else:
        records = [_read_records(p, kind) for p in paths]
        _check_same_columns(records, paths)
        run = _check_same_runs(paths)
        field = key or _find_key(records, paths)
        merged, stats = _merge_records(records, paths, field, keep, sort)
        header = _json_header(paths[0]) if kind == "json" else None
        keyed = kind == "json" and header is None and paths[0].read_text(encoding="utf-8").lstrip().startswith("{")
        _write_records(out, kind, merged, records_are_keyed=keyed, key=field, header=header)
        if run is not None:
            from musetag.tag.run_record import write_run_record

            write_run_record(out, run)
    n_err = _merge_error_files(paths, out, {str(r.get("path", r.get(key or "path", ""))) for r in merged})
    return MergeReport(out=out, inputs=paths, rows=len(merged), errors_rows=n_err, **stats)


def _columns(rows: list[dict[str, Any]]) -> set[str]:
    """The fields of a file's rows, with the tag names of their ``scores`` (JSON rows keep them nested)."""
    out: set[str] = set()
    for row in rows:
        out.update(row)
        scores = row.get("scores")
        if isinstance(scores, dict):
            out.update(f"scores.{t}" for t in scores)
    return out


def _check_same_columns(records: list[list[dict[str, Any]]], paths: list[Path]) -> None:
    """Shards of one run have the same columns (the same model's tags); outputs of two models or settings do not,
    and merging them would give rows blank for the other model's tags."""
    files = [(p, _columns(rows)) for p, rows in zip(paths, records) if rows]
    if not files:
        return
    first = files[0]
    for p, cols in files[1:]:
        if any(c.startswith("scores.") for c in cols) != any(c.startswith("scores.") for c in first[1]):
            continue  # a shard of error rows only has no tag names to compare
        if cols != first[1]:
            extra = sorted(cols - first[1])[:5]
            missing = sorted(first[1] - cols)[:5]
            raise DatasetError(
                f"{p} and {first[0]} have different columns ({p.name} adds {extra or 'none'}, lacks {missing or 'none'}): "
                "they are not shards of one run (another model or other settings?); merge the outputs of one "
                "`musetag tag --shard I/N` run")


def _drop_run_records(paths: list[Path]) -> list[Path]:
    """``merge parts/*.json`` also matches each part's ``NAME.EXT.run.json``: a record whose output is among the
    inputs is its side file, not a part."""
    from musetag.tag.run_record import run_record_path

    records = {run_record_path(p).resolve() for p in paths if not p.name.endswith(".run.json")}
    return [p for p in paths if p.resolve() not in records]


def _check_same_runs(paths: list[Path]) -> dict[str, Any] | None:
    """Shards of one run were tagged by one model with one decision rule (:mod:`musetag.tag.run_record`): two
    inputs whose records differ are refused. Returns the record for the merged file when every input has one."""
    from musetag.tag.run_record import describe, differences, read_run_record

    held = [(p, read_run_record(p)) for p in paths]
    known = [(p, r) for p, r in held if r is not None]
    for p, record in known[1:]:
        diff = differences(known[0][1], record)
        if diff:
            raise DatasetError(
                f"{p} was tagged by {describe(record)}, {known[0][0]} by {describe(known[0][1])} (another "
                f"{' and '.join(diff)}): they are not shards of one run; tag those parts again with the same model and "
                "--threshold, then merge")
    if not known or len(known) != len(held):
        return None
    return _one_folder([r for _, r in known])


def _one_folder(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The first record, without its ``cwd`` (the folder relative paths are relative to) when the parts were
    made in different folders: no one folder then resolves every relative path, so the merge claims none."""
    first = dict(records[0])
    if len({str(r.get("cwd")) for r in records}) > 1:
        first.pop("cwd", None)
    return first


def _output_kind(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in (".npy", ".parquet"):
        return "embeddings"
    if ext in (".csv", ".tsv", ".jsonl", ".json"):
        return ext[1:]
    raise ConfigError(
        f"{path}: cannot merge {ext or 'files without extension'}; musetag merges .csv, .tsv, .jsonl, .json, "
        ".npy (embeddings) and .parquet outputs"
    )


def _parts_text(path: Path) -> str:
    """A part's text: UTF-8, except a file name that is not, which `musetag tag` wrote as its own bytes (CSV) and
    which is carried over as those bytes (surrogateescape, :mod:`musetag.tag.writers`)."""
    return path.read_bytes().decode("utf-8-sig", "surrogateescape")


def _read_records(path: Path, kind: str) -> list[dict[str, Any]]:
    if kind in ("csv", "tsv"):
        import csv

        return list(csv.DictReader(io.StringIO(_parts_text(path), newline=""), delimiter="\t" if kind == "tsv" else ","))
    if kind == "jsonl":
        rows = []
        for n, line in enumerate(_parts_text(path).split("\n"), 1):  # not splitlines: U+2028 may sit in a string
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{n}: not valid JSON ({exc.msg}); was the run interrupted? "
                                       "Re-run that shard to finish it") from None
        return rows
    try:
        data = json.loads(_parts_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc.msg}); re-run that shard") from None
    if isinstance(data, dict) and isinstance(data.get("results"), list):  # musetag tag's JSON document
        return list(data["results"])
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        return [{"path": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in data.items()]
    raise DatasetError(f"{path}: expected a JSON list of records or an object keyed by track")


def _json_header(path: Path) -> dict[str, Any] | None:
    """Top-level keys of a ``musetag tag`` JSON document (everything but ``results``), else None."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        return {k: v for k, v in data.items() if k != "results"}
    return None


def _find_key(records: list[list[dict[str, Any]]], paths: list[Path]) -> str:
    for rows, p in zip(records, paths):
        if rows:
            for cand in _KEY_CANDIDATES:
                if cand in rows[0]:
                    return cand
            raise ConfigError(f"{p}: no track column ({', '.join(_KEY_CANDIDATES)}); name it with --key")
    return "path"


def _same(a: dict[str, Any], b: dict[str, Any], vector: bool) -> bool:
    if vector:
        import numpy as np

        return a["path"] == b["path"] and np.array_equal(a["_vector"], b["_vector"])
    # top_tags is a listing of the scores cut at --top-k: two runs that differ only there gave the same results
    return {k: v for k, v in a.items() if k != "top_tags"} == {k: v for k, v in b.items() if k != "top_tags"}


def _merge_records(records, paths, field, keep, sort, vector=False):
    seen: dict[str, tuple[dict[str, Any], Path]] = {}
    identical = resolved = retried = 0
    per_input: dict[str, int] = {}
    for rows, p in zip(records, paths):
        per_input[str(p)] = len(rows)
        for row in rows:
            if field not in row:
                raise DatasetError(f"{p}: a row has no {field!r} field; name the track column with --key")
            k = str(row[field])
            if k in seen:
                prev, prev_path = seen[k]
                if _same(prev, row, vector):
                    identical += 1
                    continue
                status = (prev.get("status"), row.get("status"))
                if "ok" in status and status[0] != status[1]:  # a failed track that succeeded elsewhere
                    retried += 1
                    if status[1] == "ok":
                        seen[k] = (row, p)
                    continue
                if keep == "error":
                    raise DatasetError(
                        f"track {k!r} has different results in {prev_path} and {p}: the shards overlap "
                        "(different --shard N, or a file tagged twice with different models). Re-run with "
                        "consistent shards, or choose with --keep first|last"
                    )
                resolved += 1
                if keep == "first":
                    continue
            seen[k] = (row, p)
    merged = [row for row, _ in seen.values()]
    if sort:
        merged.sort(key=lambda r: str(r[field]))
    return merged, {"per_input": per_input, "identical_duplicates": identical, "conflicts_resolved": resolved,
                    "failures_replaced": retried}


@contextmanager
def _naming(out: Path):
    """An error writing ``out`` names ``out``, not the temporary file written first (``x.csv.tmp``)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or str(exc.filename) == str(out):
            raise
        raise OSError(exc.errno, exc.strerror, str(out)) from None


def _write_records(out: Path, kind: str, rows, records_are_keyed: bool, key: str, header=None) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with _naming(out):
            _write_tmp(tmp, kind, rows, records_are_keyed, key, header)
            os.replace(tmp, out)
    except BaseException:
        with suppress(OSError):  # a full disk or an interrupt leaves no x.csv.tmp behind
            tmp.unlink(missing_ok=True)
        raise


def _write_tmp(tmp: Path, kind: str, rows, records_are_keyed: bool, key: str, header) -> None:
    from musetag.tag.writers import json_text  # JSON that UTF-8 can write, odd file names escaped

    if kind in ("csv", "tsv"):
        import csv

        fields: list[str] = []
        for row in rows:
            for name in row:
                if name not in fields:
                    fields.append(name)
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:  # odd names: their bytes
            writer = csv.DictWriter(f, fieldnames=fields, delimiter="\t" if kind == "tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif kind == "jsonl":
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json_text(row) + "\n")
    else:
        if records_are_keyed:
            data: Any = {}
            for row in rows:
                row = dict(row)
                k = row.pop(key)
                data[k] = row["value"] if list(row) == ["value"] else row
        elif header is not None:
            data = {**header, "results": rows}
        else:
            data = rows
        tmp.write_text(json_text(data, indent=1), encoding="utf-8")


def _merge_meta(metas: list[dict[str, Any]], paths: list[Path]) -> dict[str, Any]:
    ref = metas[0]
    for meta, p in zip(metas[1:], paths[1:]):
        if bool(meta.get("scores")) != bool(ref.get("scores")):
            raise DatasetError(f"{p} and {paths[0]}: one was embedded with --with-scores and the other without; "
                               "re-embed that shard with the same setting")
        for field in ("model_sha256", "dim", "layer"):
            if meta.get(field) != ref.get(field):
                raise DatasetError(
                    f"{p} was embedded with {field}={meta.get(field)!r} but {paths[0]} with {ref.get(field)!r}: "
                    "embeddings of different models cannot be merged; re-embed that shard with the same model"
                )
    merged = {k: v for k, v in _one_folder(metas).items() if k not in ("shard", "created")}
    merged["merged_from"] = [str(p) for p in paths]
    return merged


def errors_path(out: str | os.PathLike) -> Path:
    """The side file listing tracks that failed: ``tags.csv`` -> ``tags.errors.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.errors.csv")


def _merge_error_files(paths: list[Path], out: Path, succeeded: set[str]) -> int:
    import csv

    rows: dict[str, dict[str, str]] = {}
    fields: list[str] = []
    found = False
    for p in paths:
        ep = errors_path(p)
        if not ep.exists():
            continue
        found = True
        with open(ep, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for name in reader.fieldnames or []:
                if name not in fields:
                    fields.append(name)
            for row in reader:
                k = row.get("path") or next(iter(row.values()), "")
                if k not in succeeded:
                    rows[k] = row
    if not found:
        return 0
    target = errors_path(out)
    with open(target, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields or ["path", "error"])
        writer.writeheader()
        for k in sorted(rows):
            writer.writerow(rows[k])
    return len(rows)
