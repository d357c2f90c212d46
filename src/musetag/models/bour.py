"""Bour 2021, "Frequency Dependent Convolutions for Music Tagging" (MediaEval 2021, test PR-AUC .1504).

Table 1 of the paper, for a 128-band x 224-frame input::

    layer     input      kernel/stride  channels  dropout
    conv1     128 x 224  3x3 / 2         64       0
    conv2      64 x 112  3x3 / 1         64       0
    conv3      64 x 112  3x3 / 1        128       0
    maxpool    64 x 112  3x3 / 2
    filter1    32 x 56   3x3 / 2        128       0.2
    filter2    16 x 28   3x3 / 2        256       0.2
    filter3     8 x 14   3x3 / 1        256       0.2   (the table prints 16 x 28: a misprint, see below)
    filter4     8 x 14   3x3 / 2        256       0.2
    collapse    4 x 7    4x1 / 1        512       0.2   dense over the remaining frequency bins
    avgpool     1 x 7    1x7 / 1                        average over time
    fc          1 x 1                  1024       0.5
    output      1 x 1                  n_classes  0.5

filter2 has stride 2, so filter3 sees 8 x 14 (filter4's listed input, 8 x 14, only follows from
that); the author's code uses the same strides. ``bour_filters`` replaces filter1-4 with
frequency-dependent convolutions (:class:`FrequencyDependentConv2d`), about six times the
parameters of ``bour_convs``. Every convolution is followed by batch normalisation and ReLU;
dropout acts on a layer's input. The collapse layer fixes the number of mel bands; the time
axis is averaged, so any length of at least 32 frames works.
"""
from __future__ import annotations

import torch
from torch import nn

from musetag.models.base import SPECTROGRAM, InputSpec, MusetagModel
from musetag.models.layers import ConvBnAct, FrequencyDependentConv2d, conv_out_size
from musetag.models.registry import register_model

PAPER = "Bour 2021, Frequency Dependent Convolutions for Music Tagging (MediaEval 2021)"
_INPUT = InputSpec(SPECTROGRAM, (1, 128, 224), preset="bour128", min_length=32, fixed_freq=True)
_STRIDES = (2, 2, 1, 2)


class _Filter(nn.Module):
    """Dropout2d -> 3x3 convolution (shared or frequency dependent) -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, in_freq: int, dropout: float, freq_dependent: bool):
        super().__init__()
        self.drop = nn.Dropout2d(dropout)
        if freq_dependent:
            self.conv = FrequencyDependentConv2d(cin, cout, in_freq, 3, stride, 1, bias=False)
        else:
            self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.drop(x))))


class BourNet(MusetagModel):
    """The Bour 2021 CNN (Table 1); ``frequency_dependent=True`` gives the "filters" variant."""

    def __init__(self, *, n_classes: int, in_channels: int = 1, n_mels: int = 128, frequency_dependent: bool = False,
                 channels: tuple[int, ...] = (128, 256, 256, 256), dropout: float = 0.2,
                 collapse_channels: int = 512, fc_features: int = 1024, fc_dropout: float = 0.5) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError("channels must list the widths of filter1-4")
        self.conv1 = ConvBnAct(in_channels, 64, 3, 2, 1)
        self.conv2 = ConvBnAct(64, 64, 3, 1, 1)
        self.conv3 = ConvBnAct(64, 128, 3, 1, 1)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        freq = conv_out_size(conv_out_size(n_mels, 3, 2, 1), 3, 2, 1)
        layers, cin = [], 128
        for i, (cout, stride) in enumerate(zip(channels, _STRIDES)):
            layers.append(_Filter(cin, cout, stride, freq, dropout, frequency_dependent))
            freq, cin = conv_out_size(freq, 3, stride, 1), cout
        self.filter1, self.filter2, self.filter3, self.filter4 = layers
        self.collapse_freq = freq
        # "collapse": a dense layer over the remaining frequency bins (a freq x 1 convolution)
        self.collapse_drop = nn.Dropout2d(dropout)
        self.collapse = ConvBnAct(cin, collapse_channels, (freq, 1), 1, 0)
        self.fc = nn.Sequential(nn.Dropout(fc_dropout), nn.Linear(collapse_channels, fc_features), nn.ReLU(inplace=True))
        self.num_features = fc_features
        self.head_drop = nn.Dropout(fc_dropout)
        self.classifier = nn.Linear(fc_features, n_classes)
        self.default_input = InputSpec(SPECTROGRAM, (in_channels, n_mels, 224), preset="bour128" if n_mels == 128 else None,
                                       min_length=32, fixed_freq=True)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Everything up to the collapse layer: ``(B, C, F, T) -> (B, 512, 1, T / 32)``."""
        x = self.maxpool(self.conv3(self.conv2(self.conv1(x))))  # (B, 128, F/4, T/4)
        x = self.filter4(self.filter3(self.filter2(self.filter1(x))))  # (B, 256, F/32, T/32)
        return self.collapse(self.collapse_drop(x))  # (B, 512, 1, T/32)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk(x).mean(dim=(2, 3))  # average over time -> (B, 512)
        return self.fc(x)  # (B, 1024)


@register_model("bour_convs", family="bour-cnn", paper=PAPER, default_input=_INPUT,
                description="Bour 2021 Table 1 CNN with ordinary 3x3 convolutions")
def bour_convs(*, n_classes: int, in_channels: int = 1, n_mels: int = 128,
               channels: tuple[int, ...] = (128, 256, 256, 256), dropout: float = 0.2) -> BourNet:
    """Bour 2021 Table 1 CNN with ordinary 3x3 convolutions (``n_mels`` 128 or 96)."""
    return BourNet(n_classes=n_classes, in_channels=in_channels, n_mels=n_mels, channels=tuple(channels),
                   dropout=dropout, frequency_dependent=False)


@register_model("bour_filters", family="bour-cnn", paper=PAPER, default_input=_INPUT,
                description="Bour 2021 Table 1 CNN with frequency-dependent convolutions in filter1-4")
def bour_filters(*, n_classes: int, in_channels: int = 1, n_mels: int = 128,
                 channels: tuple[int, ...] = (128, 256, 256, 256), dropout: float = 0.2) -> BourNet:
    """Bour 2021 Table 1 CNN with frequency-dependent convolutions in filter1-4 (~6x parameters)."""
    return BourNet(n_classes=n_classes, in_channels=in_channels, n_mels=n_mels, channels=tuple(channels),
                   dropout=dropout, frequency_dependent=True)
