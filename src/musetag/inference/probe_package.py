"""One model package from a probe run: the pretrained backbone(s) and the probe together.

A probe (:mod:`musetag.models.probe`) learns from track embeddings; to tag audio it needs the
backbone that made them. ``musetag package RUN`` of a probe run (its checkpoint's features say
``kind = "embedding"``) writes a package whose model is ``probe_on_backbone``: the backbone
packages' networks (``backbones.<i>.*``) and the probe (``probe.*``) in one ``model.safetensors``,
with the backbone's front end and segment rule and ``aggregation = "embedding_mean"``; embeddings made with
``windows=fit`` (:mod:`musetag.inference.embed_spec`) add ``max_overlap = 0.5`` to that rule, so tagging
cuts the windows the cached embeddings were made from. The tagger
then averages the windows' embeddings over the track (exactly as ``musetag embed`` and the
embedding cache do), concatenates the backbones' vectors and applies the probe once
(:mod:`musetag.inference.probe_tagging`), so a package's scores are ``probe(embed(track))``.

A backbone embedded with ``layers=``/``pool=`` (:mod:`musetag.inference.embed_layers`) records its layers (as
tap names), statistics and the layout of its slice (``model_args.backbones[i].layers/pool/layout``), so that
tagging computes the same statistics of the same layers over the same windows.

A backbone with scores (``embed:NAME:scores``) keeps its aggregation rule and task in the package
(``model_args.backbones[i].scores``) so that tagging rebuilds the same vector.

Several backbones (``embed:a+b``) go into one package when they share the front end and segment
rule (e.g. ``jamendo-fcn+msd-fcn``); otherwise the error says so.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from musetag.errors import ModelError

EMBEDDING_MEAN = "embedding_mean"


def _front(pkg) -> tuple[Any, Any]:
    features = {k: v for k, v in pkg.features.items() if k not in ("mean", "std", "name")}
    segment = {k: v for k, v in pkg.segment.items() if k != "aggregation"}
    return features, segment


def same_front(a: str, b: str) -> bool:
    """Whether two backbones of an embedding spec hear the audio alike (front end, segment and window rule): one
    probe package can hold both. Reads the packages' settings, not their weights."""
    from musetag.inference.embed_spec import parse_part, part_windows
    from musetag.inference.loading import load_model

    if part_windows(a) != part_windows(b):
        return False
    a_pkg, b_pkg = (load_model(parse_part(x)[0], load_weights=False) for x in (a, b))
    return _front(a_pkg) == _front(b_pkg)

def _layer_choice(pkg, chosen) -> dict[str, Any] | None:
    """``{"layers", "pool", "layout"}`` of a backbone embedded with ``layers=`` (names resolved on its
    network; the layout of its slice of the probe's input), or None for the ``forward_features`` mean."""
    if chosen is None:
        return None
    from musetag.inference.embed_layers import ALL, chosen as resolve

    layers, layout = resolve(pkg.build_model(), ALL if chosen[0] == ["all"] else chosen[0], chosen[1], "layers")
    if layers is None:
        layers = list(dict.fromkeys(r["layer"] for r in layout))
    return {"layers": layers, "pool": list(chosen[1]), "layout": layout}


def package_probe(ckpt: dict[str, Any], checkpoint_path: Path, run_dir: str | os.PathLike, out: str | os.PathLike, *,
                  overwrite: bool = False) -> Path:
    """Write the backbone + probe package of a probe run's checkpoint ``ckpt`` to ``out``."""
    from musetag.inference.embed_spec import FIT_OVERLAP, parse_part, part_layers, part_windows, split_spec
    from musetag.inference.loading import load_model
    from musetag.inference.package import save_package

    features = ckpt.get("features") or {}
    spec = features.get("embed")
    if not spec:
        raise ModelError(f"{checkpoint_path}: an embedding checkpoint without 'embed' (its backbone); retrain the probe")
    parts = split_spec(spec)
    backbones, scored, choices = [], [], []
    for part in parts:
        name, with_scores = parse_part(part)
        try:
            backbones.append(load_model(name))
        except ModelError as exc:
            raise ModelError(f"{checkpoint_path}: the probe's backbone {name!r} cannot be loaded ({exc}); "
                             "restore it (or pull it: `musetag pull NAME`) and package again") from None
        if with_scores and backbones[-1].aggregation == EMBEDDING_MEAN:
            raise ModelError(f"{checkpoint_path}: the backbone {name!r} is itself a backbone + probe package, whose "
                             "scores cannot be rebuilt per window; train the probe on embed:NAME without :scores")
        scored.append({"aggregation": backbones[-1].aggregation, "task": backbones[-1].task} if with_scores else None)
        choices.append(_layer_choice(backbones[-1], part_layers(part)))
    first = _front(backbones[0])
    for part, pkg in zip(parts[1:], backbones[1:]):
        if _front(pkg) != first:
            raise ModelError(
                f"{checkpoint_path}: the backbones {parts[0]!r} and {part!r} hear the audio differently (front end or "
                "segment rule), so they cannot share one package; train the probe on embeddings of one backbone "
                "(or of backbones with the same front end, e.g. jamendo-fcn+msd-fcn) to package it"
            )
    probe_spec = dict(ckpt["model"])
    state: dict[str, Any] = {}
    for i, pkg in enumerate(backbones):
        state.update({f"backbones.{i}.{k}": v for k, v in pkg.state_dict.items()})
    state.update({f"probe.{k}": v for k, v in ckpt["state_dict"].items()})
    windows = {part_windows(p) for p in parts}
    if len(windows) > 1:
        raise ModelError(f"{checkpoint_path}: the backbones of {spec!r} were embedded with different window rules "
                         "(windows=fit and windows=upstream), so one package cannot tag as they were made; "
                         "train the probe on a preset whose backbones share one rule")
    segment = dict(backbones[0].segment, aggregation=EMBEDDING_MEAN)
    if windows == {"fit"}:  # tag with the windows the embeddings were made with (no train/serve skew)
        segment["max_overlap"] = FIT_OVERLAP
    source = {"run_dir": str(Path(run_dir).resolve()), "checkpoint": checkpoint_path.name,
              "backbones": [{"model": p, "sha256": pkg.sha256, **({"source": pkg.source} if pkg.source else {})}
                            for p, pkg in zip(parts, backbones)]}
    licences = [pkg.licence for pkg in backbones if pkg.licence]
    citations = [pkg.citation for pkg in backbones if pkg.citation]
    return save_package(
        out,
        model_name="probe_on_backbone",
        model_args={"backbones": [{"name": pkg.model_name, "args": dict(pkg.model_args), **({"scores": sc} if sc else {}),
                                   **(ch or {})} for pkg, sc, ch in zip(backbones, scored, choices)],
                    "probe": {"name": probe_spec["name"], "args": dict(probe_spec.get("args") or {})}},
        state_dict=state,
        features=dict(backbones[0].features),
        tags=list(ckpt.get("tags") or []),
        task=ckpt.get("task", "multilabel"),
        segment=segment,
        thresholds=ckpt.get("thresholds"),
        source=source,
        overwrite=overwrite,
        licence="; ".join(dict.fromkeys(licences)) or None,
        citation=" ".join(dict.fromkeys(citations)) or None,
    )
