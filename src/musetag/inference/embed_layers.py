"""Embeddings from pooled statistics of a backbone's intermediate layers (``NAME@layers=...,pool=...``,
:mod:`musetag.inference.embed_spec`; the layers: :mod:`musetag.models.taps`).

One forward pass per batch of windows collects every tap of the backbone (forward hooks,
:class:`LayerStatsRunner`); a track's :class:`LayerStats` turns the windows' partial sums into its
stats array (per tap: mean, std, max over all frames of all windows) and returns either that whole
array (``layers="all"``: what ``musetag prepare`` keeps per backbone and per file in the array store)
or the chosen layers and statistics taken out of it (:func:`musetag.models.taps.select`). Both go
through the same float32 stats array, so ``musetag embed``, ``prepare`` and a backbone + probe
package (:mod:`musetag.inference.probe_tagging`) give the same numbers.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from musetag.errors import AudioError, ConfigError
from musetag.inference.runners import _TorchRunner
from musetag.inference.scoring import WindowScorer
from musetag.models.taps import (select, selection_layout, stats_layout, stats_of, tap_names, whole_or_layers,
                                 window_partials)

#: ``layers=ALL``: the whole stats array (every tap, every statistic)
ALL = "all"


class LayerStatsRunner(_TorchRunner):
    """Per tap of the model, the windows' partial sums ``(n, 3 * C + 1)`` (float64), one forward pass."""

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return [p.cpu().numpy() for p in window_partials(self.model, x)[1]]


class LayerStats:
    """A track's accumulator: ``add(partials)`` per batch, ``result()`` the stats array, or the
    chosen ``layers`` x ``pool`` of it (``layers`` None: the whole array)."""

    def __init__(self, names: list[str], layers: list[str] | None, pool: list[str]) -> None:
        self.names, self.layers, self.pool = names, layers, pool
        self.parts: list[list[np.ndarray]] = [[] for _ in names]

    def add(self, partials: list[np.ndarray]) -> None:
        for store, p in zip(self.parts, partials):
            store.append(np.asarray(p))

    def stats(self) -> tuple[np.ndarray, list[dict[str, Any]]]:
        if not self.parts[0]:
            raise AudioError("no segments to embed")
        joined = [np.concatenate(p, axis=0) for p in self.parts]
        widths = [(p.shape[1] - 1) // 3 for p in joined]
        return stats_of(joined), stats_layout(self.names, widths)

    def result(self) -> np.ndarray:
        stats, layout = self.stats()
        return stats if self.layers is None else select(stats, layout, self.layers, self.pool)


def layer_scorer(network: Any, layers: list[str] | str, pool: list[str]) -> WindowScorer:
    """The scorer of an embedder with layer statistics on ``network`` (torch only): ``layers`` (names or
    indices) x ``pool`` of the stats array, or the whole array (``layers="all"``)."""
    if network.backend != "torch":
        raise ConfigError("an embedding with layers= runs with the torch backend only; drop --backend onnx")
    names = tap_names(network.model)
    resolved = whole_or_layers(layers, pool, names)
    runner = LayerStatsRunner(network.model, network.device)
    return WindowScorer(runner, lambda: LayerStats(names, resolved, pool), None, tags=[])


def probe_layouts(model: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """``(tap names, stats layout)`` of ``model`` from one forward pass of a short input (its widths)."""
    import torch

    spec = model.default_input
    length = max(int(spec.min_length), 1)
    with torch.inference_mode():
        x = spec.example(batch=1, length=length if spec.variable_length else None).to(next(model.parameters()).device)
        partials = window_partials(model.eval(), x)[1]
    names = tap_names(model)
    return names, stats_layout(names, [(int(p.shape[1]) - 1) // 3 for p in partials])


def chosen(model: Any, layers: list[str] | str | None, pool: list[str], where: str) -> tuple[list[str] | None, list[dict[str, Any]]]:
    """``(resolved layers or None for the whole array, the vector's layout)`` of an embedder's choice."""
    names, full = probe_layouts(model)
    resolved = whole_or_layers(layers or [], pool, names, where)
    return resolved, full if resolved is None else selection_layout(full, resolved, pool)
