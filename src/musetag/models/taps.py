"""Intermediate layers of a model as embedding "taps": per-frame channel vectors collected by forward
hooks in the same pass as ``forward_features`` (:func:`window_partials`).

A model lists its taps in ``embedding_taps`` (name -> submodule path, in order from the input); the
last tap is always ``features``, the ``forward_features`` vector (one frame per window). A tap's
output becomes frames ``(batch, channels, frames)``: a 2-D map ``(B, C, F, T)`` is averaged over
frequency, a 1-D map ``(B, C, T)`` is kept, a recurrent layer's ``(output, state)`` gives its output
``(B, T, H)`` read as ``(B, H, T)``, a vector ``(B, D)`` is one frame.

Per window and per tap the hooks keep the sum, the sum of squares, the maximum and the number of its
frames (:data:`PARTIAL` columns); a track's statistics over all frames of all its windows are then
``mean``, ``std`` (population) and ``max`` per channel (:data:`STATS`), in that order per tap: the
layout :func:`stats_layout` describes. :func:`select` takes chosen layers and statistics out of
that array, so choosing other layers or statistics recomputes nothing.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from musetag.errors import ConfigError

FEATURES = "features"
#: the statistics a track's stats array holds per tap, in this order
STATS = ("mean", "std", "max")


def tap_names(model: nn.Module) -> list[str]:
    """The model's taps in order from the input, ``features`` last (a model without ``embedding_taps``: ``features`` only)."""
    return [*dict(getattr(model, "embedding_taps", {}) or {}), FEATURES]


def _frames(output: Any) -> torch.Tensor:
    """A hooked module's output as ``(batch, channels, frames)``."""
    if isinstance(output, tuple):  # nn.GRU / nn.LSTM: (output (B, T, H), state)
        return output[0].transpose(1, 2)
    if output.dim() == 4:  # (B, C, F, T)
        return output.mean(dim=2)
    if output.dim() == 2:  # (B, D)
        return output.unsqueeze(-1)
    return output  # (B, C, T)


def _partial(frames: torch.Tensor) -> torch.Tensor:
    """Per window: ``[sum (C), sum of squares (C), max (C), frame count (1)]`` in float64."""
    f = frames.double()
    count = torch.full((f.shape[0], 1), float(f.shape[2]), dtype=torch.float64, device=f.device)
    return torch.cat([f.sum(2), (f * f).sum(2), f.amax(2), count], dim=1)


def window_partials(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(forward_features(x), [per tap: (batch, 3 * channels + 1) partial sums])`` from one forward pass:
    forward hooks on every tap of ``model`` (``tap_names`` order, ``features`` last)."""
    taps = dict(getattr(model, "embedding_taps", {}) or {})
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, path in taps.items():
        def hook(_module, _inputs, output, name=name):
            seen[name] = _partial(_frames(output))

        handles.append(model.get_submodule(path).register_forward_hook(hook))
    try:
        features = model.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    return features, [seen[name] for name in taps] + [_partial(_frames(features))]


def stats_of(partials: list[np.ndarray]) -> np.ndarray:
    """A track's stats array (float32): per tap ``mean, std, max`` over all frames, from per-window
    partial sums ``(windows, 3 * C + 1)`` (float64, as :func:`window_partials` gives them)."""
    pieces = []
    for p in partials:
        p = np.asarray(p, dtype=np.float64)
        c = (p.shape[1] - 1) // 3
        n = p[:, -1].sum()
        mean = p[:, :c].sum(0) / n
        var = np.maximum(p[:, c : 2 * c].sum(0) / n - mean * mean, 0.0)
        pieces += [mean, np.sqrt(var), p[:, 2 * c : 3 * c].max(0)]
    return np.concatenate(pieces).astype(np.float32)


def stats_layout(names: list[str], widths: list[int]) -> list[dict[str, Any]]:
    """``[{"layer", "stat", "offset", "length"}]`` of a stats array (:data:`STATS` per tap)."""
    rows, offset = [], 0
    for name, width in zip(names, widths):
        for stat in STATS:
            rows.append({"layer": name, "stat": stat, "offset": offset, "length": int(width)})
            offset += int(width)
    return rows


def whole_or_layers(layers: list[str] | str, pool: list[str], names: list[str], where: str = "layers") -> list[str] | None:
    """The tap names a choice takes, or None for the whole stats array: ``all`` with every statistic in the array's
    order is the array as it is, ``all`` with other statistics every tap; otherwise :func:`resolve_layers`."""
    if layers == "all" or list(layers) == ["all"]:
        return None if tuple(pool) == STATS else list(names)
    return resolve_layers(list(layers), names, where)


def resolve_layers(layers: list[str], names: list[str], where: str = "layers") -> list[str]:
    """Layer choices as tap names: a name, or a 1-based index into ``names`` (negative: from the end,
    ``-1`` is ``features``). An unknown one is a ConfigError listing the model's taps."""
    out = []
    for item in layers:
        text = str(item).strip()
        try:
            index = int(text)
        except ValueError:
            index = None
        if index is not None and 1 <= abs(index) <= len(names):
            out.append(names[index - 1 if index > 0 else index])
        elif index is None and text in names:
            out.append(text)
        else:
            raise ConfigError(f"{where}: layer {text!r} is not one of this backbone's taps "
                              f"({', '.join(f'{i}={n}' for i, n in enumerate(names, 1))}; -1 is the last)")
    return out


def select(stats: np.ndarray, layout: list[dict[str, Any]], layers: list[str], pool: list[str]) -> np.ndarray:
    """The slices of a stats array for ``layers`` (tap names) x ``pool`` (statistics), layer by layer,
    each layer's statistics in the order of ``pool`` (float32)."""
    where = {(r["layer"], r["stat"]): r for r in layout}
    pieces = []
    for layer in layers:
        for stat in pool:
            row = where.get((layer, stat))
            if row is None:
                raise ConfigError(f"the stats array holds no {stat!r} of layer {layer!r} "
                                  f"(it holds {sorted({r['layer'] for r in layout})})")
            pieces.append(stats[row["offset"] : row["offset"] + row["length"]])
    return np.concatenate(pieces).astype(np.float32, copy=False)


def selection_layout(layout: list[dict[str, Any]], layers: list[str], pool: list[str]) -> list[dict[str, Any]]:
    """The layout of :func:`select`'s vector: ``[{"layer", "stat", "offset", "length"}]``."""
    widths = {r["layer"]: r["length"] for r in layout}
    rows, offset = [], 0
    for layer in layers:
        for stat in pool:
            rows.append({"layer": layer, "stat": stat, "offset": offset, "length": widths[layer]})
            offset += widths[layer]
    return rows
