"""Probes: small classifiers on track embeddings of a pretrained model (the small-data path).

``probe_linear``
    standardise (per-dimension mean/std of the training embeddings, stored as buffers) -> one
    linear layer: multinomial logistic regression (multiclass) or one logistic regression per tag
    (multilabel), the model scikit-learn's ``LogisticRegression`` fits.
``probe_mlp``
    standardise -> Linear(dim, hidden) -> ReLU -> Linear(hidden, n_classes).
``probe_on_backbone``
    pretrained backbone(s) and a probe in one network, what ``musetag package`` makes of a probe
    run: ``forward_features`` is the backbone's embedding of one window and ``head(embedding)``
    the probe's logits. A package of it says ``aggregation = "embedding_mean"``: the tagger averages
    the windows' embeddings over the track first (as ``musetag embed`` and the embedding cache do)
    and applies the head once, so its scores are exactly ``probe(embed(track))``. A backbone with
    ``scores`` (from ``preset = "embed:NAME:scores"``) adds its tag scores after its embedding:
    ``window_outputs`` gives each backbone's window embeddings and logits, which the tagger
    averages and aggregates by that backbone's rule (:mod:`musetag.inference.probe_tagging`), as
    ``musetag embed --with-scores`` does.

Inputs: any ``(batch, ...)`` tensor holding ``dim`` numbers per item (the cache stores ``(dim, 1)``
per track, which batches to ``(batch, 1, dim, 1)``). Fitting (L-BFGS, the regularisation chosen on
validation) is in :mod:`musetag.training.probe`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from musetag.errors import ModelError
from musetag.models.base import InputSpec, MusetagModel
from musetag.models.registry import register_model

_PAPER = "Alain & Bengio (2017), linear probes; Castellon, Donahue & Liang (2021), probing music representations"


def _embedding_input(dim: int) -> InputSpec:
    return InputSpec(kind="spectrogram", shape=(1, int(dim), 1), variable_length=False, fixed_freq=True)


class _Probe(MusetagModel):
    def __init__(self, dim: int) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ModelError(f"probe: dim (the embedding size) must be a positive integer, got {dim!r}")
        self.dim = dim
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.default_input = _embedding_input(dim)

    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-dimension statistics of the training embeddings (constant dimensions keep std 1)."""
        std = torch.as_tensor(std, dtype=self.std.dtype).clone()
        std[std < 1e-8] = 1.0
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(std)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Any ``(batch, ...)`` layout holding ``dim`` numbers per item (no spectrogram shape check)."""
        return self._features(x)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.dim:
            raise ModelError(f"probe built for {self.dim}-d embeddings got {x.shape[1]} numbers per item "
                             f"(input shape {tuple(x.shape)}); use embeddings of the backbone it was trained on")
        return (x.to(self.mean.dtype) - self.mean) / self.std


class LinearProbe(_Probe):
    def __init__(self, n_classes: int, dim: int) -> None:
        super().__init__(dim)
        self.num_features = dim
        self.classifier = nn.Linear(dim, n_classes)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardise(x)


class MLPProbe(_Probe):
    def __init__(self, n_classes: int, dim: int, hidden: int) -> None:
        super().__init__(dim)
        self.hidden = nn.Linear(dim, hidden)
        self.num_features = hidden
        self.classifier = nn.Linear(hidden, n_classes)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(self.standardise(x)))


@register_model("probe_linear", family="probe", paper=_PAPER, default_input=_embedding_input(64))
def probe_linear(*, n_classes: int, in_channels: int = 1, dim: int = 64) -> MusetagModel:
    """Logistic regression on standardised track embeddings (``dim`` numbers per track)."""
    return LinearProbe(n_classes, dim)


@register_model("probe_mlp", family="probe", paper=_PAPER, default_input=_embedding_input(64))
def probe_mlp(*, n_classes: int, in_channels: int = 1, dim: int = 64, hidden: int = 256) -> MusetagModel:
    """One hidden ReLU layer on standardised track embeddings (regularised by the L2 penalty the fit
    chooses on validation; full-batch L-BFGS, so no dropout)."""
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ModelError(f"probe_mlp: hidden must be a positive integer, got {hidden!r}")
    return MLPProbe(n_classes, dim, hidden)


class ProbeOnBackbone(nn.Module):
    """``forward_features``: the backbones' window embeddings, concatenated; ``head``: the probe
    (see the module docstring). ``scores[i]`` (``{"aggregation", "task"}`` or None): backbone ``i``'s
    tag scores follow its embedding in the probe's input."""

    def __init__(self, backbones: list[nn.Module], probe: nn.Module, scores: list | None = None,
                 choices: list | None = None, widths: list[int] | None = None) -> None:
        super().__init__()
        self.backbones = nn.ModuleList(backbones)
        self.probe = probe
        self.scores = list(scores) if scores is not None else [None] * len(backbones)
        #: per backbone, ``(layers, pool)`` when its embedding is layer statistics (:mod:`musetag.models.taps`;
        #: tagging: :mod:`musetag.inference.probe_tagging`), else None (the ``forward_features`` mean)
        self.choices = list(choices) if choices is not None else [None] * len(backbones)
        #: the width of each backbone's slice of the probe's input (``widths``: of layer statistics)
        self.num_features = sum(widths) if widths else sum(int(getattr(b, "num_features", 0)) for b in backbones)
        self.default_input = getattr(backbones[0], "default_input", None)

    @property
    def has_scores(self) -> bool:
        return any(s is not None for s in self.scores)

    @property
    def has_layers(self) -> bool:
        return any(c is not None for c in self.choices)

    def _refuse_layers(self) -> None:
        if self.has_layers:
            raise ModelError("this backbone + probe's input is statistics of layers over a whole track, not one "
                             "window's vector; tag it with musetag.inference.Tagger (`musetag tag`), which pools them")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._refuse_layers()
        return torch.cat([b.forward_features(x) for b in self.backbones], dim=-1)

    def window_outputs(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per backbone: its window embeddings and, for a backbone with scores, its window logits
        (one pass where the backbone keeps the base forward contract)."""
        from musetag.models.base import features_and_logits

        return [features_and_logits(b, x) if s is not None else (b.forward_features(x), None)
                for b, s in zip(self.backbones, self.scores)]

    def head(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits of the probe for track vectors (the embeddings, with scores where asked)."""
        return self.probe(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The probe on each window alone (a one-window track: its embedding and, where asked, its
        probabilities, which every aggregation rule gives for a single window)."""
        self._refuse_layers()
        if not self.has_scores:
            return self.head(self.forward_features(x))
        parts = []
        for (features, logits), s in zip(self.window_outputs(x), self.scores):
            parts.append(features)
            if logits is not None:
                parts.append(torch.softmax(logits, -1) if s.get("task") == "multiclass" else torch.sigmoid(logits))
        return self.head(torch.cat(parts, dim=-1))


@register_model("probe_on_backbone", family="probe", paper=_PAPER, default_input=_embedding_input(64))
def probe_on_backbone(*, n_classes: int, in_channels: int = 1, backbones: list | None = None,
                      probe: dict | None = None) -> nn.Module:
    """Pretrained backbones (``[{"name", "args"}, ...]``, embeddings concatenated; ``"scores":
    {"aggregation", "task"}`` in an entry appends that backbone's tag scores) with a probe
    (``{"name", "args"}``) on their track vector; built by ``musetag package`` of a probe run."""
    from musetag.models.registry import create_model

    if not isinstance(backbones, list) or not backbones:
        raise ModelError(f"probe_on_backbone: backbones must be a non-empty list of {{'name', 'args'}}, got {backbones!r}")
    for key, spec in [("backbone", b) for b in backbones] + [("probe", probe)]:
        if not isinstance(spec, dict) or not spec.get("name"):
            raise ModelError(f"probe_on_backbone: {key} must be {{'name': ..., 'args': {{...}}}}, got {spec!r}")
    bodies = []
    for spec in backbones:
        b_args: dict[str, Any] = dict(spec.get("args") or {})
        bodies.append(create_model(spec["name"], **{"n_classes": b_args.pop("n_classes", 1), **b_args}))
    p_args: dict[str, Any] = {k: v for k, v in dict(probe.get("args") or {}).items() if k != "n_classes"}
    head = create_model(probe["name"], n_classes=n_classes, **p_args)
    scores = [spec.get("scores") for spec in backbones]
    choices = [(list(spec["layers"]), list(spec.get("pool") or ["mean"])) if spec.get("layers") else None
               for spec in backbones]
    if any(c is not None for c in choices) and any(s is not None for s in scores):
        raise ModelError("probe_on_backbone: layers= and scores cannot be mixed; re-create the package from a probe "
                         "trained on one of them")
    for spec, s in zip(backbones, scores):
        if s is not None and (not isinstance(s, dict) or not s.get("aggregation") or not s.get("task")):
            raise ModelError(f"probe_on_backbone: backbone {spec['name']!r} has scores {s!r}; expected "
                             "{'aggregation': ..., 'task': ...}; re-create the package with `musetag package RUN`")
    widths = [sum(int(r["length"]) for r in spec["layout"]) if spec.get("layout") else int(getattr(b, "num_features", 0))
              for spec, b in zip(backbones, bodies)]
    return ProbeOnBackbone(bodies, head, scores, choices, widths if any(choices) else None)


class ProbeAverage(nn.Module):
    """The mean of several probes, each reading its own columns of one track vector (what
    ``musetag train probe-auto`` keeps when nested cross-validation says averaging its top heads
    helps). ``forward`` returns logits of the averaged output: ``logit(mean sigmoid)`` (multilabel),
    ``log(mean softmax)`` (multiclass) or the mean value (regression)."""

    def __init__(self, members: list[nn.Module], columns: list[list[list[int]]], task: str) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.columns = [[(int(a), int(b)) for a, b in spans] for spans in columns]
        self.task = task
        self.dim = max(b for spans in self.columns for _, b in spans)
        self.num_features = self.dim
        self.default_input = _embedding_input(self.dim)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """The averaged output of the track vectors ``x`` ``(batch, dim)`` (the embedding is the vector itself)."""
        if x.shape[1] != self.dim:
            raise ModelError(f"probe_average built for {self.dim}-d track vectors got {x.shape[1]} numbers per item; "
                             "use embeddings of the backbones it was trained on")
        outs = []
        for member, spans in zip(self.members, self.columns):
            logits = member(torch.cat([x[:, a:b] for a, b in spans], dim=1))
            if self.task == "multilabel":
                outs.append(torch.sigmoid(logits))
            elif self.task == "multiclass":
                outs.append(torch.softmax(logits, -1))
            else:
                outs.append(logits)
        mean = torch.stack(outs).mean(0)
        if self.task == "regression":
            return mean
        if self.task == "multiclass":
            return torch.log(mean.clamp_min(1e-12))
        mean = mean.clamp(1e-7, 1 - 1e-7)
        return torch.log(mean) - torch.log1p(-mean)


@register_model("probe_average", family="probe", paper=_PAPER, default_input=_embedding_input(64))
def probe_average(*, n_classes: int, in_channels: int = 1, members: list | None = None,
                  task: str = "multilabel") -> nn.Module:
    """The average of probes (``members``: ``[{"name", "args", "columns": [[start, end], ...]}]``, each
    reading those column ranges of the track vector); ``task`` decides how outputs are averaged."""
    from musetag.models.registry import create_model

    if task not in ("multilabel", "multiclass", "regression"):
        raise ModelError(f"probe_average: task must be multilabel, multiclass or regression, got {task!r}")
    if not isinstance(members, list) or not members:
        raise ModelError(f"probe_average: members must be a non-empty list of {{'name', 'args', 'columns'}}, got {members!r}")
    built, columns = [], []
    for spec in members:
        spans = spec.get("columns") if isinstance(spec, dict) else None
        if not spec.get("name") or not isinstance(spans, list) or not spans \
                or not all(isinstance(s, (list, tuple)) and len(s) == 2 and 0 <= s[0] < s[1] for s in spans):
            raise ModelError(f"probe_average: member {spec!r} needs a name and columns [[start, end], ...]")
        args = {k: v for k, v in dict(spec.get("args") or {}).items() if k not in ("n_classes", "dim")}
        dim = sum(int(b) - int(a) for a, b in spans)
        built.append(create_model(spec["name"], n_classes=n_classes, dim=dim, **args))
        columns.append([[int(a), int(b)] for a, b in spans])
    return ProbeAverage(built, columns, task)
