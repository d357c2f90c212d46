"""Weights onto a module: a model body initialised from a local file (``pretrained_path``, never a
download), the one input-convolution adapter, and the key-for-key comparison of a state dict with a model.

:func:`load_pretrained` reads the file with :func:`~musetag.models.weights.files.read_state_dict`, drops
the output-layer weights (the tag set differs) and adapts a 3-channel (RGB) input convolution to the
model's input channels with :func:`adapt_input_weight`.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from musetag.errors import ModelError
from musetag.models.weights.files import read_state_dict


def adapt_input_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A conv weight ``(out, in, kh, kw)`` converted to ``in_channels`` input channels, as timm's
    ``adapt_input_conv`` does for RGB filters: summed over the input channels for one channel, else
    repeated and scaled by ``in / in_channels`` (so the response to a constant input is kept). Unlike
    timm's it also converts from 1 or 2 channels (timm refuses or returns them unchanged). Computed in
    float32, returned in the weight's dtype."""
    if weight.shape[1] == in_channels:
        return weight
    w = weight.float()
    if in_channels == 1:
        out = w.sum(dim=1, keepdim=True)
    else:
        repeat = math.ceil(in_channels / w.shape[1])
        out = w.repeat(1, repeat, 1, 1)[:, :in_channels] * (w.shape[1] / in_channels)
    return out.to(weight.dtype)


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
    flush_denormals(module)


def state_dict_mismatch(state: dict, own: dict, *, skip_shapes_under: str | None = None, show: int = 5) -> str:
    """How ``state`` fails to fit ``own`` key for key ("" when it fits): missing and unexpected keys and
    shape mismatches (file vs model), the first ``show`` of each named. Shapes under
    ``skip_shapes_under`` (a classifier re-created for other tags) are not compared."""

    from musetag.errors import shortlist

    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
             if k in own and tuple(state[k].shape) != tuple(own[k].shape)
             and not (skip_shapes_under and k.startswith(skip_shapes_under))]
    parts = [f"{label} {shortlist(keys, show)}" for label, keys in
             (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)) if keys]
    return "; ".join(parts)


def flush_denormals(module: nn.Module) -> int:
    """Set every subnormal float in ``module``'s parameters and buffers to zero, in place; the count.

    Weight decay drives dead filters towards zero, and published networks keep them as subnormal
    numbers (jamendo-musicnn: 98,417 of its weights; jamendo-crnn: 93,846). x86 CPUs multiply
    subnormals in microcode, so such a network runs up to ~50x slower (musicnn: 39 s instead of 0.8 s
    for 16 windows on one core). Zeroing them moves no output by more than ~1e-37 times an activation.
    """
    flushed = 0
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if not tensor.is_floating_point():
                continue
            sub = (tensor != 0) & (tensor.abs() < torch.finfo(tensor.dtype).tiny)
            count = int(sub.sum())
            if count:
                tensor.masked_fill_(sub, 0.0)
                flushed += count
    return flushed
