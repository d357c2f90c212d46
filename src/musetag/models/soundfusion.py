"""SoundFusion genre models (Ausilio, Keshavarz, Prodan, "SoundFusion: Music Recognition by
Information Fusion of Different Representations"; FMA-small 8 genres, GTZAN).

* ``simplecnn``: four conv blocks (5x5/2 pad 2, then 3x3/2 pad 1; ReLU then BatchNorm), global
  average pooling, linear: exactly 25,472 trainable parameters for stereo input and 8 classes.
* ``nnet1`` / ``nnet2`` (Zhang et al. 2016): see :mod:`musetag.models.soundfusion`.
* ``vgg16`` (Simonyan & Zisserman 2015), ``resnet1d`` (Allamy & Koerich 2021) and ``soundfusion``.

Spectrogram inputs follow the seed's stereo 64-band mels (44.1 kHz, 1024-sample window, hop 512;
5 s segments = 431 frames); waveform inputs are mono 22.05 kHz, 5 s = 110,250 samples.
"""
from __future__ import annotations

import torch
from torch import nn

from musetag.models.base import SPECTROGRAM, InputSpec, MusetagModel
from musetag.models.layers import ConvBnAct
from musetag.models.registry import register_model

PAPER = "Ausilio, Keshavarz, Prodan, SoundFusion: Music Recognition by Information Fusion of Different Representations"
_FUSION = InputSpec(SPECTROGRAM, (2, 64, 431), preset="fusion64", min_length=16)


class SimpleCNN(MusetagModel):
    def __init__(self, *, n_classes: int, in_channels: int = 2, width: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width]
        layers, cin = [], in_channels
        for i, cout in enumerate(chans):
            k, p = (5, 2) if i == 0 else (3, 1)
            layers.append(ConvBnAct(cin, cout, k, 2, p, bias=True, order="conv_act_bn"))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, n_classes)
        self.default_input = _FUSION.with_channels(in_channels)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 8 * width, F/16, T/16)
        return self.pool(x).flatten(1)  # (B, 8 * width)


@register_model("simplecnn", family="soundfusion", paper=PAPER, default_input=_FUSION,
                description="SoundFusion SimpleCNN: 4 conv blocks, 25,472 parameters (stereo, 8 genres)")
def simplecnn(*, n_classes: int, in_channels: int = 1, width: int = 8, dropout: float = 0.0) -> SimpleCNN:
    """SoundFusion SimpleCNN (channels width x 1, 2, 4, 8; 25,472 parameters for stereo, 8 classes)."""
    return SimpleCNN(n_classes=n_classes, in_channels=in_channels, width=width, dropout=dropout)
