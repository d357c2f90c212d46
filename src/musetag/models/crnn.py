"""Convolutional recurrent network (Choi, Fazekas, Sandler, Cho 2016, "Convolutional Recurrent
Neural Networks for Music Classification"), one of the baselines of Koutini et al. 2019
(MediaEval 2019 test PR-AUC .1172).

Four 3x3 convolutions (64, 128, 128, 128 channels) with batch normalisation, ELU, max pooling
(2,2), (3,3), (4,4), (4,4) and dropout 0.1 reduce a 96-band mel spectrogram to one frequency bin;
a two-layer GRU (32 units) summarises the remaining time steps and its last output feeds the
classifier.
"""
from __future__ import annotations

import torch
from torch import nn

from musetag.models.base import SPECTROGRAM, InputSpec, MusetagModel
from musetag.models.layers import ConvBnAct
from musetag.models.registry import register_model

PAPER = "Choi et al. 2016, Convolutional Recurrent Neural Networks for Music Classification (Koutini 2019 baseline)"
_INPUT = InputSpec(SPECTROGRAM, (1, 96, 1366), preset="jamendo96", min_length=96)


class CRNN(MusetagModel):
    def __init__(self, *, n_classes: int, in_channels: int = 1, channels: tuple[int, ...] = (64, 128, 128, 128),
                 pools: tuple[tuple[int, int], ...] = ((2, 2), (3, 3), (4, 4), (4, 4)), hidden: int = 32,
                 dropout: float = 0.1, head_dropout: float = 0.3) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(in_channels)
        layers, cin = [], in_channels
        for cout, pool in zip(channels, pools):
            layers += [ConvBnAct(cin, cout, 3, 1, 1, act="elu"), nn.MaxPool2d(pool), nn.Dropout(dropout)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.gru = nn.GRU(cin, hidden, num_layers=2, batch_first=True)
        self.num_features = hidden
        self.head_drop = nn.Dropout(head_dropout)
        self.classifier = nn.Linear(hidden, n_classes)
        min_t = 1
        for p in pools:
            min_t *= p[1]
        self.default_input = InputSpec(SPECTROGRAM, (in_channels, *_INPUT.shape[1:]), preset="jamendo96", min_length=min_t)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.input_bn(x))  # (B, 128, F/96, T/96)
        x = x.amax(dim=2).transpose(1, 2)  # (B, T/96, 128): remaining frequency bins max-pooled
        out, _ = self.gru(x)  # (B, T/96, hidden)
        return out[:, -1]  # (B, hidden)


@register_model("crnn", family="crnn", paper=PAPER, default_input=_INPUT,
                description="CRNN (Choi et al. 2016): 4 conv layers + 2-layer GRU")
def crnn(*, n_classes: int, in_channels: int = 1, hidden: int = 32, dropout: float = 0.1) -> CRNN:
    """Choi et al. 2016 CRNN on 96-band mels (``hidden`` GRU units)."""
    return CRNN(n_classes=n_classes, in_channels=in_channels, hidden=hidden, dropout=dropout)
