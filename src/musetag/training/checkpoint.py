"""Self-describing checkpoints (format fixed in docs/CONTRACTS.md, musetag.training section).

A checkpoint is a ``torch.save`` dict that rebuilds the model and its front end without the
training config:

- ``format``: ``"musetag-checkpoint"``, ``format_version``: 1, ``musetag_version``
- ``model``: ``{"name": ..., "args": {...}}`` for ``musetag.models.create_model(name, **args)``
  (``args`` include ``n_classes`` and ``in_channels``)
- ``state_dict``: the weights (plain module keys, no DDP/compile prefixes)
- ``features``: ``FeatureConfig.to_dict()`` including the dataset normalisation ``mean``/``std``
- ``tags``: the tag (or class) names, in output order; ``task``: ``"multilabel"``/``"multiclass"``
- ``segment``: ``{"frames"|"samples": n, "hop": n, "aggregation": "mean"|"mean_logits"|"max",
  "max_segments": n}`` (how a whole track is cut and its segment outputs combined)
- ``thresholds``: per-tag decision thresholds tuned on validation (max F1), or ``None``
- ``kind``: which weights (``best``, ``swa``, ``last``, ``snapshot``, ``peer_best``...), ``epoch``,
  ``metrics`` (validation metrics of these weights)

``last.pt`` adds the training state needed by ``musetag train --resume``: ``training`` =
``{epoch, step, optimizer, optimizer_name, schedule, swa, rng, early_stopping, ...}``.
Writes are atomic (temporary file + rename) so a killed run never leaves a torn checkpoint.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musetag import __version__
from musetag.errors import ModelError

FORMAT = "musetag-checkpoint"
FORMAT_VERSION = 1


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP, ``torch.compile`` and ``AveragedModel`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(model, torch.optim.swa_utils.AveragedModel):
            model = model.module
        else:
            return model


def model_payload(model: torch.nn.Module, *, meta: dict, kind: str, epoch: int, metrics: dict | None = None) -> dict:
    """A checkpoint dict for ``model`` with the run's ``meta`` (model spec, features, tags...)."""
    plain = unwrap(model)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "musetag_version": __version__,
        "model": meta["model"],
        "state_dict": {k: v.detach().cpu().clone() for k, v in plain.state_dict().items()},
        "features": meta["features"],
        "tags": list(meta["tags"]),
        "task": meta["task"],
        "segment": meta["segment"],
        "thresholds": meta.get("thresholds"),
        "kind": kind,
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
    }


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Atomically write ``payload`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Read a musetag checkpoint, checking its format."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist; pass RUN_DIR/checkpoints/best.pt (or last.pt, swa.pt)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ModelError(f"checkpoint {path} cannot be read ({exc}); the file is corrupt or not a torch file") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not a musetag checkpoint (no format = {FORMAT!r}); was it written by musetag train?")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(
            f"{path} has checkpoint format {payload['format_version']}, newer than this musetag "
            f"({FORMAT_VERSION}); upgrade musetag"
        )
    return payload


def load_model(path_or_payload: str | Path | dict, *, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint (in eval mode) and return ``(model, payload)``."""
    payload = path_or_payload if isinstance(path_or_payload, dict) else load_checkpoint(path_or_payload, map_location=map_location)
    from musetag.models import create_model

    spec = dict(payload["model"])
    args = dict(spec.get("args", {}))
    model = create_model(spec["name"], **args)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise ModelError(
            f"checkpoint weights do not fit model {spec['name']!r}: missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )
    model.eval()
    return model, payload


# -- RNG state -------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
