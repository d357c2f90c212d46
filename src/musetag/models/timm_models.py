"""ImageNet architectures from timm (Wightman, PyTorch Image Models) on spectrograms, as used by
SELAB-HCMUS at MediaEval 2021 (Pham et al., "Music Theme and Emotion Classification with
Co-teaching Training Strategy": EfficientNet-B0 / ReXNet-100 co-teaching, test PR-AUC .1435; they
also tried MixNet-S, ResNet and RegNet).

Random initialisation; ``pretrained_path=`` initialises the body from a local timm checkpoint
(never a download; a 3-channel stem is adapted to ``in_channels``). Any other timm architecture
is available as ``timm:<name>``. timm is imported through :func:`musetag._compat.import_timm`.
"""
from __future__ import annotations

import difflib

import torch
from torch import nn

from musetag._compat import import_timm
from musetag.errors import ModelError
from musetag.models.base import SPECTROGRAM, InputSpec, MusetagModel
from musetag.models.weights import load_pretrained
from musetag.models.registry import ModelInfo, register_model, register_prefix

PAPER = "Pham et al. 2021, SELAB-HCMUS at MediaEval 2021: Music Theme and Emotion Classification with Co-teaching"
_INPUT = InputSpec(SPECTROGRAM, (1, 96, 960), preset="jamendo96", min_length=32)


def create_timm_body(timm_name: str, in_channels: int, pretrained_path: str | None = None, **kwargs) -> nn.Module:
    """A timm model without classifier (``num_classes=0``): ``(B, C, F, T) -> (B, num_features)``."""
    timm = import_timm()
    if not timm.is_model(timm_name):
        close = difflib.get_close_matches(timm_name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"timm has no architecture {timm_name!r}.{hint} See timm.list_models() for the names.")
    body = timm.create_model(timm_name, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
    if pretrained_path:
        cfg = getattr(body, "pretrained_cfg", None) or getattr(body, "default_cfg", {}) or {}
        classifier = cfg.get("classifier", "classifier")
        classifiers = classifier if isinstance(classifier, (list, tuple)) else [classifier]
        first = cfg.get("first_conv")
        first = first[0] if isinstance(first, (list, tuple)) else first
        load_pretrained(body, pretrained_path, drop_prefixes=tuple(c + "." for c in classifiers),
                        first_conv=f"{first}.weight" if first else None, in_channels=in_channels,
                        what=f"timm model {timm_name!r}")
    return body


class TimmModel(MusetagModel):
    """timm body (global average pooling) -> dropout -> linear classifier."""

    def __init__(self, *, timm_name: str, n_classes: int, in_channels: int = 1, pretrained_path: str | None = None,
                 dropout: float = 0.2, drop_path_rate: float = 0.0, default_input: InputSpec = _INPUT) -> None:
        super().__init__()
        extra = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
        self.timm_name = timm_name
        self.body = create_timm_body(timm_name, in_channels, pretrained_path, **extra)
        self.num_features = int(self.body.num_features)
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, n_classes)
        self.default_input = default_input.with_channels(in_channels)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, num_features), timm's global average pooling


def _register(name: str, timm_name: str, what: str) -> None:
    @register_model(name, family="timm", paper=PAPER, default_input=_INPUT, description=what)
    def build(*, n_classes: int, in_channels: int = 1, pretrained_path: str | None = None, dropout: float = 0.2,
              drop_path_rate: float = 0.0) -> TimmModel:
        return TimmModel(timm_name=timm_name, n_classes=n_classes, in_channels=in_channels,
                         pretrained_path=pretrained_path, dropout=dropout, drop_path_rate=drop_path_rate)

    build.__name__ = name
    build.__doc__ = f"{what}; ``pretrained_path`` = local timm checkpoint (optional)."


_register("efficientnet_b0", "efficientnet_b0", "EfficientNet-B0 (Tan & Le 2019) via timm, random init")
_register("rexnet_100", "rexnet_100", "ReXNet-1.0 (Han et al. 2021) via timm, random init")
_register("mixnet_s", "mixnet_s", "MixNet-S (Tan & Le 2019) via timm, random init")
_register("regnety_002", "regnety_002", "RegNetY-200MF (Radosavovic et al. 2020) via timm, random init")


def _generic_builder(*, n_classes: int, in_channels: int = 1, timm_name: str, pretrained_path: str | None = None,
                     dropout: float = 0.2, drop_path_rate: float = 0.0) -> TimmModel:
    """Any timm architecture (``timm:<name>``)."""
    return TimmModel(timm_name=timm_name, n_classes=n_classes, in_channels=in_channels,
                     pretrained_path=pretrained_path, dropout=dropout, drop_path_rate=drop_path_rate)


def generic_timm_info(name: str) -> ModelInfo:
    timm_name = name[len("timm:"):]
    if not timm_name:
        raise ModelError("model name 'timm:' needs an architecture, e.g. 'timm:resnet18'")
    return ModelInfo(name, "timm", f"timm architecture {timm_name!r} (random init)", _INPUT,
                     f"timm {timm_name} on spectrograms", _generic_builder)


register_prefix("timm:", generic_timm_info)
