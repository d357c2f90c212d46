"""The one reader of weight files: ``.safetensors``, or a ``torch.save`` file read without running code
from it (:mod:`musetag.models.safe_load`).

:func:`read_weights` finds the state dict in what it read (a bare ``state_dict``, or one stored under
``state_dict``, ``model_state_dict``, ``model``, ``net``, ``network``, ``weights``, ``params`` or
``ema``, as other toolkits save them) and, for a musetag checkpoint (``model`` = ``{"name", "args"}``
beside ``state_dict``), what the checkpoint says of the model, its tags, features and task.
:func:`read_state_dict` is the tensors alone with DataParallel's ``module.`` prefix removed.
Nothing is ever downloaded.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from musetag.errors import ModelError
from musetag.models.weights.key_maps import tensors_only

#: where other toolkits keep the state dict inside a saved dict, tried in this order
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params", "ema")


@dataclass
class WeightsFile:
    """What a weights file holds: the tensors, and the checkpoint's own description when it has one."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    checkpoint: dict[str, Any] | None = None  # the whole musetag checkpoint dict (model, tags, features...)


def read_weights(path: str | os.PathLike, *, what: str = "weights file") -> WeightsFile:
    """Read ``path`` (``.safetensors`` or a PyTorch file). Raises :class:`ModelError` naming the file when
    it is missing, damaged, refused (a pickle naming Python objects) or holds no tensors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(
            f"{what} not found: {path}. Give the path of a local weights file (.pth/.pt/.safetensors); "
            "musetag never downloads weights."
        )
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return WeightsFile(path, load_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - name the file
            raise ModelError(f"{what} {path}: cannot read safetensors weights ({exc}); the file is damaged") from None
    from musetag.models.safe_load import load_torch_file

    obj = load_torch_file(path, what=what)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj.get("model"), Mapping) \
            and "name" in obj["model"]:
        return WeightsFile(path, tensors_only(obj["state_dict"]), checkpoint=dict(obj))
    return WeightsFile(path, find_state_dict(obj, path))


def find_state_dict(obj: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a loaded object: a module's state dict, a dict of (mostly) tensors, or the first
    of :data:`STATE_DICT_KEYS` holding one (searched recursively)."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        tensors = tensors_only(obj)
        if tensors and len(tensors) >= len(obj) / 2:
            return tensors
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], (Mapping, nn.Module)):
                try:
                    return find_state_dict(obj[key], path)
                except ModelError:
                    continue
    raise ModelError(
        f"{path}: found no weights in this file (expected a state_dict, or a dict holding one under "
        "'state_dict', 'model_state_dict' or 'model'); pass a musetag run folder, package, checkpoint or "
        "a .safetensors/.pt file of tensors"
    )


def read_state_dict(path: str | os.PathLike, *, what: str = "pretrained checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a weights file (:func:`read_weights`), DataParallel's ``module.`` prefix removed."""
    state = read_weights(path, what=what).state_dict
    return {k.removeprefix("module."): v for k, v in state.items()}
