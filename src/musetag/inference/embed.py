"""Track embeddings: one vector per track from a trained model, for search and downstream models.

The vector is the model's pooled penultimate layer (``forward_features``) computed on the tagger's
windows (the package's segment length) and averaged over them; by default (``windows="fit"``)
consecutive windows overlap by at most half their length (a catalogue model that cuts a 30 s clip
into 16 nearly identical 29 s chunks embeds one), ``windows="upstream"`` keeps the model's own rule.
``scores=True`` (``--with-scores``) appends the track's tag scores, aggregated as the tagger does over
the same windows as the embedding (:mod:`musetag.inference.embed_scores`).

The :class:`Embedder` is a :class:`~musetag.inference.tagger.Tagger` given another scorer
(:func:`embedding_scorer`: the feature runner and the mean of the window vectors), so it decodes,
streams and parallelises exactly as the tagger. Many files into one embeddings file:
:func:`musetag.tag.embed_files.embed_files` (``musetag embed``).
"""
from __future__ import annotations

import os
from functools import partial
from typing import Any

import numpy as np

from musetag.errors import ConfigError, MusetagError
from musetag.inference.embed_spec import DEFAULT_WINDOWS, FIT_OVERLAP, WINDOWS
from musetag.inference.runners import Network, _TorchRunner
from musetag.inference.scoring import MeanVector, WindowScorer
from musetag.inference.tagger import Tagger


class _FeatureRunner(_TorchRunner):
    """The pooled penultimate layer (``forward_features``) of a batch of windows."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return self.model.forward_features(x).float().cpu().numpy()


def embedding_scorer(network: Network, scores: bool = False) -> WindowScorer:
    """The embedder's scorer on ``network``: each window's ``forward_features`` vector (the ONNX graph's
    ``embedding`` output), averaged over the track; ``scores``: followed by the track's tag scores
    (:func:`musetag.inference.embed_scores.scored_embedding_scorer`). The result has no tag columns."""
    package = network.package
    if package.aggregation == "embedding_mean":  # a backbone + probe package: its checks hold here too
        from musetag.inference.probe_tagging import check_probe_network

        check_probe_network(network)
        if getattr(network.model, "has_layers", False) and not scores:
            from musetag.inference.probe_tagging import layered_vector_scorer

            return layered_vector_scorer(network)
    if network.backend == "onnx":
        runner = network.runner
    else:
        if not hasattr(network.model, "forward_features"):
            raise MusetagError(f"model {package.model_name!r} has no forward_features(); it cannot embed")
        runner = _FeatureRunner(network.model, network.device)
    if scores:
        from musetag.inference.embed_scores import scored_embedding_scorer

        return scored_embedding_scorer(network, runner)
    return WindowScorer(runner, MeanVector, None, tags=[])


def embedding_package(package, windows: str):
    """``package`` with the windows an embedding uses: ``fit`` adds ``max_overlap`` = :data:`FIT_OVERLAP` to
    its segment (consecutive windows overlap by at most half their length), ``upstream`` keeps the model's
    own rule. A backbone + probe package keeps the rule it records (the one its embeddings were made with)."""
    from dataclasses import replace

    if windows not in WINDOWS:
        raise ConfigError(f"windows={windows!r} is not one of {', '.join(WINDOWS)}")
    if windows == "upstream" or package.aggregation == "embedding_mean":
        return package
    return replace(package, segment={**package.segment, "max_overlap": FIT_OVERLAP})


class Embedder(Tagger):
    """A :class:`~musetag.inference.tagger.Tagger` composed with :func:`embedding_scorer`: one vector per track.

    ``embed(source)`` returns that vector; ``tag_many`` yields results whose ``scores_array``
    is the vector (``status`` as for tagging). ``backend="onnx"`` reads the ``embedding`` output
    of the graph ``musetag export`` writes (onnxruntime; same front end). ``scores=True``: the
    vector is followed by the track's tag scores as the tagger gives them
    (:mod:`musetag.inference.embed_scores`; ``score_tags`` names those columns). ``windows``: ``fit``
    (default; consecutive windows overlap by at most half their length, :func:`embedding_package`) or
    ``upstream`` (the model's own segment rule, as ``musetag tag`` uses it). ``layers`` (tap names or
    indices, :mod:`musetag.models.taps`) and ``pool`` (``mean``/``std``/``max``): the vector is those
    statistics of those layers over all frames of all windows (:mod:`musetag.inference.embed_layers`;
    ``layers="all"``: the whole stats array); ``layout`` then says which slice is which.
    """

    def __init__(self, package, *, batch_size: int = 32, device: str = "cpu", backend: str = "torch",
                 scores: bool = False, windows: str = DEFAULT_WINDOWS, layers: list[str] | str | None = None,
                 pool: list[str] | None = None, **kwargs: Any) -> None:
        self.with_scores = bool(scores)
        self.windows = windows
        self.pool = list(pool or ["mean"])
        package = embedding_package(package, windows)
        if layers is not None and (scores or package.aggregation == "embedding_mean"):
            raise ConfigError(f"{package.path or package.model_name}: layers= goes with a plain backbone only "
                              "(not with :scores or a backbone + probe package); drop one of them")
        scorer = partial(embedding_scorer, scores=self.with_scores)
        if layers is not None:
            from musetag.inference.embed_layers import layer_scorer

            scorer = partial(layer_scorer, layers=layers, pool=self.pool)
            if backend == "auto":  # inner layers are read by hooks on the torch network
                backend = "torch"
        super().__init__(package, backend=backend, batch_size=batch_size, device=device,
                         scorer=scorer, onnx_output="embedding", **kwargs)
        #: ``[{"layer", "stat", "offset", "length"}]`` of the vector (None: the forward_features mean)
        self.layout = None
        self.layers = None
        if layers is not None:
            self._choose_layers(layers)
        elif self.backend == "onnx":  # resolved: "auto" may have chosen either
            self.feature_dim = int(self.network.runner.width)
        else:
            self.feature_dim = int(getattr(self.model, "num_features", 0))
        self.score_tags = list(package.tags) if scores else []

    def _choose_layers(self, layers: list[str] | str) -> None:
        from musetag.inference.embed_layers import chosen

        self.layers, self.layout = chosen(self.model, layers, self.pool, "layers")
        self.feature_dim = sum(r["length"] for r in self.layout)

    def embed(self, source: Any, sample_rate: int | None = None) -> np.ndarray:
        """The embedding of one file (path, bytes, file object) or array (``sample_rate`` needed)."""
        return self.tag(source, sample_rate).scores_array

    @property
    def dim(self) -> int:
        return self.feature_dim + len(self.score_tags)


def load_embedder(model: Any, *, batch_size: int = 32, device: str = "cpu", scores: bool | None = None,
                  **kwargs: Any) -> Embedder:
    """An :class:`Embedder` from a package path or a pretrained model's name (or a loaded ``ModelPackage``,
    or an Embedder); ``backend="onnx"`` (and ``onnx_path=``) as for :class:`~musetag.inference.tagger.Tagger`;
    ``scores=True`` appends the track's tag scores to each vector (:mod:`musetag.inference.embed_scores`).
    A name may carry a spec's options (``jamendo-fcn@layers=-2,-1,pool=mean,std``,
    :mod:`musetag.inference.embed_spec`), as ``musetag embed MODEL`` takes them."""
    if isinstance(model, (str, os.PathLike)):
        model, kwargs = _spec_options(str(model), kwargs)
    if isinstance(model, Embedder):
        if kwargs.get("layers") is not None and (kwargs.get("layers"), kwargs.get("pool")) != (model.layers, model.pool):
            raise ConfigError("an Embedder was given with other layers=/pool=; pass the package path instead")
        if kwargs.get("windows", model.windows) != model.windows:
            raise ConfigError(f"an Embedder built with windows={model.windows} was given with windows={kwargs['windows']}; "
                              "pass the package path, or an Embedder built with the same setting")
        if scores is not None and bool(scores) != model.with_scores:
            raise ConfigError(f"an Embedder built with scores={model.with_scores} was given with scores={bool(scores)}; "
                              "pass the package path, or an Embedder built with the same setting")
        return model
    from musetag.inference.loading import load_model
    from musetag.inference.package import ModelPackage

    package = model if isinstance(model, ModelPackage) else load_model(model)
    return Embedder(package, batch_size=batch_size, device=device, scores=bool(scores), **kwargs)


def _spec_options(model: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(name, kwargs)`` with the options written after ``@`` in ``model`` (layers, pool, windows)."""
    from musetag.inference.embed_spec import part_layers, split_options

    name, options = split_options(model, "model")
    if not options:
        return model, kwargs
    kwargs = dict(kwargs)
    if "windows" in options:
        if kwargs.get("windows", options["windows"]) != options["windows"]:
            raise ConfigError(f"{model}: windows={options['windows']} in the name but windows={kwargs['windows']} "
                              "given (--windows); say it once")
        kwargs["windows"] = options["windows"]
    chosen = part_layers(model)
    if chosen is not None:
        kwargs["layers"], kwargs["pool"] = ("all" if chosen[0] == ["all"] else chosen[0]), chosen[1]
    return name, kwargs
