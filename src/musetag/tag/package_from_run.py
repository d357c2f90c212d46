"""A model package from a training run (``musetag package RUN``): the run's chosen checkpoint with its
feature settings, segmenting rule, thresholds and tags, written in the package format of
:mod:`musetag.inference.package` (a probe run becomes backbone + probe, :mod:`musetag.inference.probe_package`).
"""
from __future__ import annotations

import os
from pathlib import Path

from musetag.errors import ModelError
from musetag.models.weights import find_checkpoint, load_checkpoint
from musetag.inference.package import save_package


def create_package(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    checkpoint: str = "auto",
    segment_seconds: float | None = None,
    hop_seconds: float | None = None,
    aggregation: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Package a training run's checkpoint (SWA by default, else best, else last) into ``out``.

    ``segment_seconds`` / ``hop_seconds`` / ``aggregation`` override (or supply) the segmenting
    the run used; by default the checkpoint's own ``segment`` is kept.
    """
    path = find_checkpoint(run_dir, checkpoint)
    ckpt = load_checkpoint(path, with_weights=True)
    if (ckpt.get("features") or {}).get("kind") == "embedding":  # a probe run: backbone + probe in one package
        from musetag.inference.probe_package import package_probe

        if segment_seconds is not None or hop_seconds is not None or aggregation is not None:
            raise ModelError(f"{path}: a probe package uses its backbone's segments; drop --segment-seconds, "
                             "--hop-seconds and --aggregation")
        return package_probe(ckpt, path, run_dir, out, overwrite=overwrite)
    model = ckpt["model"]
    features = dict(ckpt.get("features") or {})
    if not features:
        raise ModelError(f"{path}: the checkpoint has no 'features' config; it cannot be tagged faithfully")
    segment = dict(ckpt.get("segment") or {})
    if segment_seconds is not None or hop_seconds is not None:
        segment = _segment_from_seconds(features, segment, segment_seconds, hop_seconds)
    if aggregation is not None:
        segment["aggregation"] = aggregation
    source = {"run_dir": str(Path(run_dir).resolve()), "checkpoint": path.name}
    for key in ("epoch", "metrics"):
        if key in ckpt and isinstance(ckpt[key], (int, float, str, dict)):
            source[key] = ckpt[key]
    return save_package(
        out,
        model_name=model["name"],
        model_args=dict(model.get("args") or {}),
        state_dict=ckpt["state_dict"],
        features=features,
        tags=list(ckpt.get("tags") or []),
        task=ckpt.get("task", "multilabel"),
        segment=segment,
        thresholds=ckpt.get("thresholds"),
        source=source,
        overwrite=overwrite,
    )


def _segment_from_seconds(features, segment, segment_seconds, hop_seconds):
    sr = int(features["sample_rate"])
    seg = dict(segment)
    if features.get("kind", "mel") == "waveform":
        unit, per_second = "samples", float(sr)
    else:
        unit, per_second = "frames", sr / float(features["hop_length"])
    if segment_seconds is not None:
        seg.pop("frames", None)
        seg.pop("samples", None)
        seg[unit] = max(1, int(round(segment_seconds * per_second)))
    length = seg.get(unit)
    if not length:
        raise ModelError("pass --segment-seconds too: the checkpoint records no segment length")
    seg["hop"] = max(1, int(round(hop_seconds * per_second))) if hop_seconds is not None else seg.get("hop", length)
    return seg
