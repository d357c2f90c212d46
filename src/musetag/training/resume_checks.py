"""What a resume must agree on with its checkpoint (:func:`musetag.training.setup.setup_run` with ``resume``).

``musetag train --resume RUN [--set ...]`` loads ``checkpoints/last.pt`` into the networks the config builds now.
A ``--set`` that changes the network, the tags, the task, the features or the optimiser would fail inside torch
with a traceback (or, for same-shaped weights, silently continue another run): :func:`check_resumable` names
those settings first. :func:`finalised` tells a finished run (``summary.json`` written after the epochs
``last.pt`` holds) from one stopped during its final evaluation, which a resume finishes.
"""
from __future__ import annotations

import json
from pathlib import Path

from musetag.errors import ConfigError, MusetagError
from musetag.training import checkpoint as ckpt
from musetag.training.recipes import load_toml_config
from musetag.training.runstate import Run


def finalised(run_dir: Path, epochs: int) -> bool:
    """Whether ``summary.json`` was written after the epochs last.pt holds (the run finished, not only trained)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.get("epochs_run") == epochs


#: feature settings a resumed run must share with its checkpoint (mean and std follow the data: not compared)
_NOT_COMPARED_FEATURES = ("mean", "std", "name")


def check_resumable(run: Run, payload: dict) -> None:
    """Refuse, naming the settings, a resume whose config builds another network, or reads other tags or
    features, than the ones ``checkpoints/last.pt`` was trained with (loading it would fail with a torch
    traceback, or, for same-shaped weights, silently continue another run)."""
    cfg, data = run.cfg, run.data
    changed = []
    theirs = dict(payload.get("model") or {})
    ours = getattr(ckpt.unwrap(run.models[0]), "musetag_config", None) or {}
    if theirs and ours and (theirs.get("name"), theirs.get("args")) != (ours.get("name"), ours.get("args")):
        changed.append(f"the network: {describe_net(theirs)} there, {describe_net(ours)} now (model.*)")
    if payload.get("tags") is not None and list(payload["tags"]) != list(data.tags):
        changed.append(f"the tags: {len(payload['tags'])} there, {len(data.tags)} now (data.dataset)")
    if payload.get("task") and payload["task"] != data.task:
        changed.append(f"the task: {payload['task']} there, {data.task} now (data.dataset)")
    feats, now = dict(payload.get("features") or {}), data.feature_config.to_dict()
    diff = [k for k in feats if k not in _NOT_COMPARED_FEATURES and k in now and feats[k] != now[k]]
    if diff:
        changed.append("the features: " + ", ".join(f"{k} {feats[k]!r} there, {now[k]!r} now" for k in diff[:3])
                       + " (features.*)")
    try:
        before = load_toml_config(run.run_dir / "config.toml").optim.name
    except MusetagError:
        before = cfg.optim.name
    if before != cfg.optim.name:
        changed.append(f"the optimiser: {before} there, {cfg.optim.name} now (optim.name)")
    if changed:
        raise ConfigError(
            f"cannot resume {run.run_dir}: {run.last_path} was trained with other settings than this config now "
            f"gives: {'; '.join(changed)}. Resume without the --set values that change them, or train into a new "
            "--out folder")


def check_weights_fit(run: Run, index: int, ours: dict, theirs: dict) -> None:
    """Refuse weights ``theirs`` from ``last.pt`` that do not fit network ``index`` (0: the network, 1: the
    co-teaching peer) as this config builds it: a change :func:`check_resumable` does not name (the peer's)."""
    misfit = misfit_of(ours, theirs)
    if misfit:
        what = "co-teaching peer (coteaching.peer, coteaching.peer_args)" if index else "network (model.*)"
        raise ConfigError(f"cannot resume {run.run_dir}: {run.last_path} holds weights that do not fit the {what} "
                          f"this config builds ({misfit}). Resume without the --set values that change it, or train "
                          "into a new --out folder")


def misfit_of(ours: dict, theirs: dict) -> str:
    """How the weights ``theirs`` do not fit the state dict ``ours`` ('' when they do)."""
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    shapes = [k for k in ours if k in theirs and tuple(ours[k].shape) != tuple(theirs[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} weights missing, e.g. {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} unknown, e.g. {unexpected[0]!r}")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of another shape, e.g. {k!r} {list(theirs[k].shape)} there, "
                     f"{list(ours[k].shape)} now")
    return "; ".join(parts)


def describe_net(spec: dict) -> str:
    args = {k: v for k, v in dict(spec.get("args") or {}).items() if k not in ("n_classes", "in_channels")}
    return f"{spec.get('name')}({', '.join(f'{k}={v!r}' for k, v in sorted(args.items()))})"
