"""Tag scores after the embedding: ``musetag embed --with-scores`` and ``load_embedder(..., scores=True)``.

Each track's vector is the pooled penultimate mean of :mod:`musetag.inference.embed` (the same numbers as
without scores) followed by the track's tag scores exactly as ``musetag tag`` gives them for that
package: the same windows and the package's own aggregation (``mean`` of probabilities,
``mean_logits`` or ``max``, :class:`musetag.evaluate.aggregation.WindowAggregator`). One network pass per window:
a model that keeps the base contract (``forward = forward_head(forward_features(x))``) gets its
logits from ``forward_head`` of the features it embedded; a model that overrides ``forward`` is
run a second time for them (:func:`musetag.models.base.features_and_logits`). ONNX graphs from
``musetag export`` have both outputs (``logits`` and ``embedding``) from one pass. A backbone +
probe package (``aggregation = "embedding_mean"``) scores the mean embedding with its probe, as it
tags.

The metadata (``meta.json``, Parquet ``musetag`` key) of such a file says ``scores: true``,
``feature_dim`` (the embedding's columns come first) and ``score_tags`` (the names of the remaining
columns, in order), with the package's ``score_aggregation`` and ``score_task``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from musetag.errors import ConfigError
from musetag.evaluate.aggregation import WindowAggregator
from musetag.inference.scoring import MeanVector, WindowScorer


class TorchFeaturesAndLogits:
    """``(window embeddings, window logits)`` of a batch of windows, from one pass where the model allows."""

    def __init__(self, model: Any, device: Any) -> None:
        import torch

        self.torch, self.model, self.device = torch, model, torch.device(device)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from musetag.models.base import features_and_logits

        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            features, logits = features_and_logits(self.model, x)
            return features.float().cpu().numpy(), logits.float().cpu().numpy()


class OnnxFeaturesAndLogits:
    """Both outputs of a graph from ``musetag export`` (``embedding`` and ``logits``) in one run."""

    def __init__(self, runner: Any, onnx_path: Any) -> None:
        names = [o.name for o in runner.session.get_outputs()]
        if "embedding" not in names or "logits" not in names:
            raise ConfigError(
                f"{onnx_path} has the outputs {', '.join(names)}, not both 'embedding' and 'logits', so it cannot "
                "give the embedding and the scores together; export it again (`musetag export MODEL --format onnx`) "
                "or drop --with-scores"
            )
        self.session, self.input = runner.session, runner.input
        self.width = int(runner.width)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, logits = self.session.run(
            ["embedding", "logits"], {self.input: np.ascontiguousarray(batch, dtype=np.float32)}
        )
        return features, logits


class FeaturesAndScores:
    """A track's window embeddings averaged (:class:`MeanVector`, the plain embedding's numbers)
    and its window logits aggregated by the package's rule (as the tagger does); ``result()`` is
    the embedding followed by the scores, float32."""

    def __init__(self, aggregation: str, task: str) -> None:
        self.vector = MeanVector()
        self.scores = WindowAggregator(aggregation, task)

    def add(self, outputs: tuple[np.ndarray, np.ndarray]) -> None:
        features, logits = outputs
        self.vector.add(features)
        self.scores.add(logits)

    def result(self) -> np.ndarray:
        return np.concatenate([self.vector.result(), self.scores.result()]).astype(np.float32, copy=False)


def _probe_head_accumulator(model: Any, task: str, device: Any):
    """A backbone + probe package: the mean embedding, then the probe's scores (what it tags)."""
    from musetag.inference.probe_tagging import EmbeddingMeanHead, ScoredProbeHead

    class _MeanAndHead(EmbeddingMeanHead):
        def result(self) -> np.ndarray:
            return np.concatenate([self.mean(), super().result()]).astype(np.float32, copy=False)

    class _ScoredMeanAndHead(ScoredProbeHead):
        def result(self) -> np.ndarray:
            return np.concatenate([self.features(), super().result()]).astype(np.float32, copy=False)

    cls = _ScoredMeanAndHead if getattr(model, "has_scores", False) else _MeanAndHead
    return cls(model, task, device)


def scored_embedding_scorer(network: Any, feature_runner: Any) -> WindowScorer:
    """The scorer of an embedder with scores: every window's embedding and logits from one pass, the
    embeddings averaged and the logits aggregated by the package's rule (a backbone + probe package: the
    mean embedding, then the probe's scores). ``feature_runner``: the plain embedder's runner."""
    package = network.package
    if package.aggregation == "embedding_mean":  # the probe scores the track's mean embedding
        model, task, device = network.model, package.task, network.device
        runner = feature_runner
        if getattr(model, "has_scores", False):  # ... and its backbones' scores
            from musetag.inference.probe_tagging import WindowOutputsRunner

            runner = WindowOutputsRunner(model, device)
        return WindowScorer(runner, lambda: _probe_head_accumulator(model, task, device), None, tags=[])
    if network.backend == "onnx":
        runner = OnnxFeaturesAndLogits(network.runner, network.onnx_path)
    else:
        runner = TorchFeaturesAndLogits(network.model, network.device)
    return WindowScorer(runner, lambda: FeaturesAndScores(package.aggregation, package.task), None, tags=[])


def scores_meta(embedder: Any, dim: int) -> dict[str, Any]:
    """What the metadata of an embeddings file with scores (``dim`` columns) adds: which columns are which."""
    return {
        "scores": True,
        "feature_dim": int(dim) - len(embedder.score_tags),
        "score_tags": list(embedder.score_tags),
        "score_aggregation": embedder.package.aggregation,
        "score_task": embedder.task,
    }


def check_resume(what: str, has_scores: bool, scores: bool, fix_target: str) -> None:
    """Refuse to continue a run (an output or a partial folder, ``what``) made with the other setting."""
    if bool(has_scores) == bool(scores):
        return
    held = "with tag scores (--with-scores)" if has_scores else "without tag scores"
    again = "with --with-scores" if has_scores else "without --with-scores"
    raise ConfigError(
        f"{what} holds embeddings {held}; run again {again} to continue it, or {fix_target}"
    )
