"""Tagging with a backbone + probe package (``aggregation = "embedding_mean"``, :mod:`musetag.tag.probe_package`).

The network runs as for ``musetag embed`` (each window's ``forward_features``); the track's windows
are averaged into one embedding (float64 sums, as :mod:`musetag.tag.embed` does) and the probe's
head turns that embedding into scores once, so the scores equal ``probe(embed(track))``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from musetag.errors import ConfigError
from musetag.tag.embed import MeanVector

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

        from musetag.tag.tagger import _activation

        mean = self.mean("score")
        with torch.inference_mode():
            logits = self.model.head(torch.from_numpy(mean[None]).to(self.device)).float().cpu().numpy()[0]
        return _activation(logits, self.task).astype(np.float32)


def attach(tagger: Any, device: str) -> None:
    """Make ``tagger`` (a :class:`~musetag.tag.Tagger` of an ``embedding_mean`` package) run the
    backbone's embeddings and apply the probe to their track mean."""
    if tagger.backend != "torch":
        raise ConfigError(f"{tagger.package.path}: a backbone + probe package runs with the torch backend only; "
                          "drop --backend onnx")
    if not hasattr(tagger.model, "head"):
        raise ConfigError(f"{tagger.package.path}: aggregation 'embedding_mean' needs a probe_on_backbone model, "
                          f"found {tagger.package.model_name!r}; re-create the package with `musetag package RUN`")
    tagger.runner = EmbeddingRunner(tagger.runner.model, tagger.runner.device)


def accumulator(tagger: Any) -> EmbeddingMeanHead:
    return EmbeddingMeanHead(tagger.runner.model, tagger.task, tagger.runner.device)
