"""Initialise a model body from a local checkpoint file (never a download).

Accepts ``.safetensors`` or a ``torch.save`` file holding a state dict (optionally under
``"state_dict"`` or ``"model"``). Output-layer weights are dropped (the tag set differs), and a
3-channel (RGB) input convolution is adapted to 1 or 2 input channels the way timm does: summed
for one channel, repeated and rescaled otherwise.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from musetag.errors import ModelError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(
            f"pretrained checkpoint not found: {path}. Give the path of a local weights file "
            f"(.pth/.pt/.safetensors); musetag never downloads weights."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            from musetag.models.safe_load import load_torch_file

            state = load_torch_file(path, what="pretrained checkpoint")
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure means the same to the user
        raise ModelError(f"cannot read pretrained checkpoint {path}: {exc}. Is it a PyTorch/safetensors weights file?") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"pretrained checkpoint {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def adapt_input_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Convert a conv weight ``(out, 3, kh, kw)`` to ``in_channels`` input channels."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeat = math.ceil(in_channels / weight.shape[1])
    return weight.repeat(1, repeat, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def load_pretrained(module: nn.Module, path: str | Path, *, drop_prefixes: tuple[str, ...] = (),
                    first_conv: str | None = None, in_channels: int | None = None, what: str = "model",
                    key_prefix: str = "") -> None:
    """Load ``path`` into ``module`` strictly, apart from the dropped output-layer keys.

    ``key_prefix``: only keys under this prefix are used, with the prefix removed (e.g.
    ``"features."`` to load the convolutional part of a torchvision checkpoint)."""
    state = read_state_dict(path)
    if key_prefix:
        state = {k[len(key_prefix):]: v for k, v in state.items() if k.startswith(key_prefix)}
    state = {k: v for k, v in state.items() if not any(k.startswith(p) for p in drop_prefixes)}
    if first_conv and in_channels and first_conv in state and state[first_conv].dim() == 4:
        state[first_conv] = adapt_input_weight(state[first_conv], in_channels)
    mismatch = state_dict_mismatch(state, module.state_dict())
    if mismatch:
        raise ModelError(
            f"pretrained checkpoint {path} does not match {what}: keys {mismatch}. "
            f"Use weights saved from the same architecture."
        )
    module.load_state_dict(state, strict=True)


def state_dict_mismatch(state: dict, own: dict, *, skip_shapes_under: str | None = None, show: int = 5) -> str:
    """How ``state`` fails to fit ``own`` key for key ("" when it fits): missing and unexpected keys and
    shape mismatches (file vs model), the first ``show`` of each named. Shapes under
    ``skip_shapes_under`` (a classifier re-created for other tags) are not compared."""

    def named(keys: list[str]) -> str:
        return ", ".join(keys[:show]) + (f" (+{len(keys) - show} more)" if len(keys) > show else "")

    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
             if k in own and tuple(state[k].shape) != tuple(own[k].shape)
             and not (skip_shapes_under and k.startswith(skip_shapes_under))]
    parts = [f"{label} {named(keys)}" for label, keys in
             (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)) if keys]
    return "; ".join(parts)
