"""The one interface every musetag model follows (after timm's model API).

``forward(x) -> logits`` (never a sigmoid or softmax inside: losses, mixup and ensembling work on
logits), ``forward_features(x) -> (batch, num_features)`` pooled penultimate embedding, and
``classifier``: the module that maps that embedding to logits. ``reset_classifier(n_classes)``
re-creates it for a new tag set (transfer learning). ``default_input`` documents the input the
model was published with; ``musetag_config`` lets a checkpoint rebuild the model with
``create_model(config["name"], **config["args"])``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from musetag.errors import ModelError

SPECTROGRAM = "spectrogram"
WAVEFORM = "waveform"


@dataclass(frozen=True)
class InputSpec:
    """The input a model expects, without the batch dimension.

    ``kind``: ``"spectrogram"`` -> ``(channels, n_mels, frames)``, ``"waveform"`` -> ``(channels, samples)``.
    ``shape``: the documented size. ``preset``: the musetag feature preset that produces it.
    ``variable_length``: whether the last axis may differ from ``shape[-1]`` (global pooling over
    time). ``min_length``: the shortest last axis the model accepts. ``fixed_freq``: True when the
    number of mel bands is baked into the weights (frequency-dependent layers, dense over frequency).
    """

    kind: str
    shape: tuple[int, ...]
    preset: str | None = None
    variable_length: bool = True
    min_length: int = 1
    fixed_freq: bool = False
    sample_rate: int | None = None

    def with_channels(self, channels: int) -> "InputSpec":
        return replace(self, shape=(int(channels), *self.shape[1:]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "shape": list(self.shape),
            "preset": self.preset,
            "variable_length": self.variable_length,
            "min_length": self.min_length,
            "fixed_freq": self.fixed_freq,
            "sample_rate": self.sample_rate,
        }

    def example(self, batch: int = 1, length: int | None = None, *, seed: int = 0) -> torch.Tensor:
        """A random input tensor of this shape (``length`` replaces the last axis)."""
        shape = list(self.shape)
        if length is not None:
            shape[-1] = int(length)
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(batch, *shape, generator=gen)


class MusetagModel(nn.Module):
    """Base class: subclasses set ``self.classifier`` and ``self.num_features`` and implement
    ``_features(x) -> (batch, num_features)``. ``head_drop`` (dropout before the classifier) is
    optional."""

    default_input: InputSpec
    musetag_config: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self.num_features = 0
        self.head_drop: nn.Module = nn.Identity()
        self.musetag_config = {}

    # -- the interface ---------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate embedding ``(batch, num_features)``."""
        self.check_input(x)
        return self._features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head_drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)``."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The layer mapping ``forward_features`` to logits (its attribute name is ``classifier``)."""
        return self.classifier

    def reset_classifier(self, n_classes: int) -> None:
        """Replace the classifier with a freshly initialised one for ``n_classes`` outputs."""
        n_classes = _check_positive("n_classes", n_classes)
        self.classifier = nn.Linear(self.num_features, n_classes)
        self._record_n_classes(n_classes)

    @property
    def n_classes(self) -> int:
        return int(self.musetag_config.get("args", {}).get("n_classes", 0))

    # -- helpers ----------------------------------------------------------------------------
    def _features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _record_n_classes(self, n_classes: int) -> None:
        if self.musetag_config:
            self.musetag_config = {
                **self.musetag_config,
                "args": {**self.musetag_config.get("args", {}), "n_classes": int(n_classes)},
            }

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ModelError with the expected layout when ``x`` cannot be fed to this model."""
        spec = getattr(self, "default_input", None)
        if spec is None or not isinstance(x, torch.Tensor):
            return
        name = self.musetag_config.get("name", type(self).__name__)
        if spec.kind == SPECTROGRAM:
            layout, ndim = "(batch, channels, n_mels, frames)", 4
        else:
            layout, ndim = "(batch, channels, samples)", 3
        if x.dim() != ndim:
            raise ModelError(
                f"model {name!r} expects a {spec.kind} batch shaped {layout}, e.g. "
                f"{(1, *spec.shape)}; got shape {tuple(x.shape)}. Add the missing axes with "
                f"x.unsqueeze(...) (a single clip needs a batch axis; mono needs a channel axis)."
            )
        if x.shape[1] != spec.shape[0]:
            raise ModelError(
                f"model {name!r} was built for {spec.shape[0]} input channel(s), got {x.shape[1]} "
                f"(input shape {tuple(x.shape)}); create it with in_channels={x.shape[1]} or "
                f"convert the input (mono/stereo) to match."
            )
        if spec.kind == SPECTROGRAM and spec.fixed_freq and x.shape[2] != spec.shape[1]:
            raise ModelError(
                f"model {name!r} has {spec.shape[1]} mel bands built into its weights, got "
                f"{x.shape[2]} (input shape {tuple(x.shape)}); create it with n_mels={x.shape[2]} "
                f"or use features with {spec.shape[1]} bands."
            )
        length = x.shape[-1]
        if not spec.variable_length and length != spec.shape[-1]:
            raise ModelError(
                f"model {name!r} needs exactly {spec.shape[-1]} along the last axis, got {length}; "
                f"crop or pad the input to {spec.shape[-1]}."
            )
        if length < spec.min_length:
            raise ModelError(
                f"model {name!r} needs at least {spec.min_length} along the last axis, got {length}; "
                f"use longer segments (or pad the input)."
            )


def has_base_forward(model: nn.Module) -> bool:
    """Whether ``model(x)`` is the base contract ``forward_head(forward_features(x))`` (a
    :class:`MusetagModel` whose class does not override ``forward``), so that one pass through
    ``forward_features`` gives both the embedding and, through ``forward_head``, the logits."""
    return isinstance(model, MusetagModel) and type(model).forward is MusetagModel.forward


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(forward_features(x), model(x))`` from one pass when the model keeps the base contract
    (the logits are ``forward_head`` of those features); a model that overrides ``forward`` is run
    a second time for its logits."""
    features = model.forward_features(x)
    logits = model.forward_head(features) if has_base_forward(model) else model(x)
    return features, logits


def _check_positive(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"{what} must be a positive integer, got {value!r}")
    return value


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
