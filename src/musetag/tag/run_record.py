"""What made a ``musetag tag`` output: the model and the decision rule, in a side file beside it.

A CSV or JSONL row holds scores and decided tags but not the model or the thresholds that made them.
Without a record, resuming ``tags.csv`` with another model of the same tags (``jamendo-musicnn`` and
``jamendo-fcn`` share theirs) or with another ``--threshold`` skipped the files already there and mixed
two runs' rows silently, and ``musetag merge`` joined shards tagged at different thresholds. So the
writer keeps ``tags.csv.run.json`` (``{"model": {"name", "sha256", ...}, "decision": {...}}``) beside
``tags.csv`` / ``.jsonl`` / ``.json``; a resumed run and the shards of a merge must agree on the model's
checksum and on the decision rule. An output written before this record existed is accepted as it is.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["describe", "differences", "read_run_record", "run_record_path", "write_run_record"]


def run_record_path(out: str | os.PathLike) -> Path:
    """``tags.csv`` -> ``tags.csv.run.json`` (the whole name: ``tags.csv`` and ``tags.jsonl`` in one folder are two
    outputs with two records)."""
    out = Path(out)
    return out.with_name(f"{out.name}.run.json")


def read_run_record(out: str | os.PathLike) -> dict[str, Any] | None:
    """The record beside output ``out``, or ``None`` when there is none (or it is not a JSON object:
    a damaged record proves nothing and is rewritten by the next run that starts the output)."""
    path = run_record_path(out)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_run_record(out: str | os.PathLike, meta: dict[str, Any]) -> None:
    from musetag.outputs import write_text_atomic

    write_text_atomic(run_record_path(out), json.dumps(meta, ensure_ascii=False, indent=1) + "\n")


def _sha(meta: dict[str, Any]) -> str | None:
    model = meta.get("model")
    return model.get("sha256") if isinstance(model, dict) else None


def describe(meta: dict[str, Any]) -> str:
    """``jamendo-fcn (sha256 1a2b3c4d5e6f...) deciding with threshold 0.5``."""
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    decision = meta.get("decision")
    if not isinstance(decision, dict):
        rule = "no tag decisions"
    elif "threshold" in decision:
        rule = f"threshold {decision['threshold']:g}"
    else:
        rule = "per-tag thresholds"
    return f"{model.get('name', 'a model')} (sha256 {str(model.get('sha256'))[:12]}...) deciding with {rule}"


def differences(held: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """What differs between two records in what makes the rows: the model's checksum, the decision rule."""
    out = []
    if _sha(held) != _sha(meta):
        out.append("model")
    if held.get("decision") != meta.get("decision"):
        out.append("decision rule")
    return out
