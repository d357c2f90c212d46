"""Tagging with a backbone + probe package (``aggregation = "embedding_mean"``, :mod:`musetag.inference.probe_package`).

The network runs as for ``musetag embed`` (each window's ``forward_features``); the track's windows
are averaged into one embedding (float64 sums, as :mod:`musetag.inference.embed` does) and the probe's
head turns that embedding into scores once, so the scores equal ``probe(embed(track))``.

A probe trained on ``preset = "embed:NAME:scores"`` reads each scored backbone's tag scores after its
embedding: the runner gives every backbone's window embeddings and logits
(``ProbeOnBackbone.window_outputs``), and :class:`ScoredProbeHead` averages the embeddings and
aggregates the logits by that backbone's own rule, rebuilding the vector ``musetag embed
--with-scores`` (and the cache) holds before the head scores it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from musetag.errors import ConfigError
from musetag.evaluate.aggregation import WindowAggregator, activation
from musetag.inference.scoring import MeanVector, WindowScorer
from musetag.inference.segments import WindowRecorder

EMBEDDING_MEAN = "embedding_mean"


class EmbeddingRunner:
    """Window embeddings ``(n, num_features)`` of a ``probe_on_backbone`` model."""

    def __init__(self, model: Any, device: Any) -> None:
        import torch

        self.torch, self.model, self.device = torch, model, device

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return self.model.forward_features(x).float().cpu().numpy()


class EmbeddingMeanHead(MeanVector):
    """``add(window embeddings)`` per batch, then ``result()``: the head's probabilities of their mean."""

    def __init__(self, model: Any, task: str, device: Any) -> None:
        super().__init__()
        self.model, self.task, self.device = model, task, device

    def result(self) -> np.ndarray:
        import torch

        mean = self.mean("score")
        with torch.inference_mode():
            logits = self.model.head(torch.from_numpy(mean[None]).to(self.device)).float().cpu().numpy()[0]
        return activation(logits, self.task).astype(np.float32)


class WindowOutputsRunner(EmbeddingRunner):
    """Per backbone of a ``probe_on_backbone`` model with scores: ``(embeddings, logits or None)``."""

    def __call__(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return [(f.float().cpu().numpy(), None if lg is None else lg.float().cpu().numpy())
                    for f, lg in self.model.window_outputs(x)]


class ScoredProbeHead:
    """Per backbone: the mean of its window embeddings and, where it has scores, its logits
    aggregated by its rule; ``vector()`` concatenates them (float32, as the embedding cache stores
    them) and ``result()`` is the head's probabilities of that vector."""

    def __init__(self, model: Any, task: str, device: Any) -> None:
        self.model, self.task, self.device = model, task, device
        self.parts = [(MeanVector(), None if s is None else WindowAggregator(s["aggregation"], s["task"]))
                      for s in model.scores]

    def add(self, outputs: list) -> None:
        for (features, logits), (mean, agg) in zip(outputs, self.parts):
            mean.add(features)
            if agg is not None:
                agg.add(logits)

    def features(self) -> np.ndarray:
        return np.concatenate([mean.mean("score") for mean, _ in self.parts])

    def vector(self) -> np.ndarray:
        pieces = []
        for mean, agg in self.parts:
            pieces.append(mean.mean("score"))
            if agg is not None:
                pieces.append(agg.result())
        return np.concatenate(pieces).astype(np.float32, copy=False)

    def result(self) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model.head(torch.from_numpy(self.vector()[None]).to(self.device)).float().cpu().numpy()[0]
        return activation(logits, self.task).astype(np.float32)


class WindowProbeRecorder(WindowRecorder):
    """Per-window scores (``tag --segments``) of a backbone + probe package: the probe applied to each
    window's own vector (its embedding and, for a scored backbone, that window's tag probabilities),
    i.e. the scores the package gives a track made of that window alone."""

    def __init__(self, model: Any, task: str, device: Any) -> None:
        super().__init__(task)
        self.model, self.device = model, device
        self.scores = getattr(model, "scores", None) if getattr(model, "has_scores", False) else None

    def add(self, outputs: Any) -> None:
        import torch

        if self.scores is None:
            vectors = np.asarray(outputs, dtype=np.float32)
        else:
            pieces = []
            for (features, logits), spec in zip(outputs, self.scores):
                pieces.append(features)
                if spec is not None:
                    pieces.append(activation(logits, spec["task"]))
            vectors = np.concatenate(pieces, axis=1).astype(np.float32)
        with torch.inference_mode():
            logits = self.model.head(torch.from_numpy(vectors).to(self.device)).float().cpu().numpy()
        super().add(logits)


def check_probe_network(network: Any) -> None:
    """A backbone + probe package runs on torch, and its model is a ``probe_on_backbone`` (it has a head)."""
    package = network.package
    if network.backend != "torch":
        raise ConfigError(f"{package.path}: a backbone + probe package runs with the torch backend only; "
                          "drop --backend onnx")
    if not hasattr(network.model, "head"):
        raise ConfigError(f"{package.path}: aggregation 'embedding_mean' needs a probe_on_backbone model, "
                          f"found {package.model_name!r}; re-create the package with `musetag package RUN`")


class LayeredRunner(EmbeddingRunner):
    """Per backbone of a ``probe_on_backbone`` model on layer statistics: its taps' partial sums
    (:func:`musetag.models.taps.window_partials`), one forward pass each."""

    def __call__(self, batch: np.ndarray) -> list[list[np.ndarray]]:
        from musetag.models.taps import window_partials

        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return [[p.cpu().numpy() for p in window_partials(b, x)[1]] for b in self.model.backbones]


def _layer_stats(model: Any) -> list:
    """One :class:`~musetag.inference.embed_layers.LayerStats` per backbone (a backbone without layers:
    the mean of ``features``, which is the ``forward_features`` mean)."""
    from musetag.inference.embed_layers import LayerStats
    from musetag.models.taps import FEATURES, tap_names

    return [LayerStats(tap_names(b), *(c if c is not None else ([FEATURES], ["mean"])))
            for b, c in zip(model.backbones, model.choices)]


class LayeredVector:
    """The track vector of a backbone + probe on layer statistics: each backbone's chosen statistics
    over all frames of all windows, concatenated (float32, as the cache stores them)."""

    def __init__(self, model: Any) -> None:
        self.stats = _layer_stats(model)

    def add(self, outputs: list) -> None:
        for stats, partials in zip(self.stats, outputs):
            stats.add(partials)

    def result(self) -> np.ndarray:
        return np.concatenate([s.result() for s in self.stats]).astype(np.float32, copy=False)


class LayeredProbeHead(LayeredVector):
    """:class:`LayeredVector`, then the probe's probabilities of it."""

    def __init__(self, model: Any, task: str, device: Any) -> None:
        super().__init__(model)
        self.model, self.task, self.device = model, task, device

    def result(self) -> np.ndarray:
        import torch

        vector = super().result()
        with torch.inference_mode():
            logits = self.model.head(torch.from_numpy(vector[None]).to(self.device)).float().cpu().numpy()[0]
        return activation(logits, self.task).astype(np.float32)


class LayeredWindowRecorder(WindowRecorder):
    """Per-window scores of a backbone + probe on layer statistics: the probe on each window's own
    statistics (the scores of a track made of that window alone)."""

    def __init__(self, model: Any, task: str, device: Any) -> None:
        super().__init__(task)
        self.model, self.device = model, device

    def add(self, outputs: list) -> None:
        import torch

        rows = []
        for i in range(len(outputs[0][0])):
            one = LayeredVector(self.model)
            one.add([[p[i : i + 1] for p in partials] for partials in outputs])
            rows.append(one.result())
        with torch.inference_mode():
            logits = self.model.head(torch.from_numpy(np.stack(rows)).to(self.device)).float().cpu().numpy()
        super().add(logits)


def layered_vector_scorer(network: Any) -> WindowScorer:
    """The embedder's scorer on a backbone + probe package on layer statistics: its track vector."""
    model = network.model
    return WindowScorer(LayeredRunner(model, network.device), lambda: LayeredVector(model), None, tags=[])


def probe_scorer(network: Any) -> WindowScorer:
    """The scorer of a backbone + probe package (aggregation ``embedding_mean``) on ``network``: the
    backbone's window embeddings (and, for scored backbones, their logits), the probe on their track
    mean, and the probe on each window's own vector for per-window scores."""
    check_probe_network(network)
    package = network.package
    model, task, device = network.model, package.task, network.device
    if getattr(model, "has_layers", False):
        return WindowScorer(LayeredRunner(model, device), lambda: LayeredProbeHead(model, task, device),
                            lambda: LayeredWindowRecorder(model, task, device))
    scored = getattr(model, "has_scores", False)
    runner = (WindowOutputsRunner if scored else EmbeddingRunner)(model, device)
    head = ScoredProbeHead if scored else EmbeddingMeanHead
    return WindowScorer(runner, lambda: head(model, task, device), lambda: WindowProbeRecorder(model, task, device))
