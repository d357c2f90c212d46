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
Writes are atomic (temporary file + rename) so a killed run never leaves a torn checkpoint. Reading one
(with its format checks) is :func:`musetag.models.weights.load_checkpoint`.

Everything in a checkpoint is a tensor, number, string or plain container (NumPy arrays and scalars are
converted on save, the NumPy RNG state included), so it loads with ``torch.load(weights_only=True)``:
reading a checkpoint never runs code from it (:mod:`musetag.models.safe_load`).
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
from musetag.models.weights import FORMAT, FORMAT_VERSION, load_checkpoint


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


def plain(obj: Any) -> Any:
    """``obj`` with NumPy arrays as tensors and NumPy scalars as Python numbers (weights-only loadable)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj, dtype=np.int64 if obj.dtype.kind == "u" and obj.dtype != np.uint8
                                         else obj.dtype, copy=True))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [plain(v) for v in obj]
        return out if isinstance(obj, list) else tuple(out)
    return obj


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Atomically write ``payload`` (made weights-only loadable, see :func:`plain`) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(plain(payload), tmp)
    os.replace(tmp, path)
    return path


def load_model(path_or_payload: str | Path | dict, *, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint (in eval mode) and return ``(model, payload)``."""
    payload = path_or_payload if isinstance(path_or_payload, dict) else \
        load_checkpoint(path_or_payload, map_location=map_location, with_weights=True)
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
    """Every generator's state as tensors and plain values (the NumPy key as an int64 tensor)."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"name": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(int(v) for v in py[1]), py[2]) if isinstance(py, (list, tuple)) else py)
    ns = state["numpy"]
    if isinstance(ns, dict):
        key = np.asarray(ns["key"].numpy() if isinstance(ns["key"], torch.Tensor) else ns["key"]).astype(np.uint32)
        ns = (ns["name"], key, ns["pos"], ns["has_gauss"], ns["cached_gaussian"])
    np.random.set_state(ns)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
