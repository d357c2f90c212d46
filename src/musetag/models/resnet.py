"""Residual networks (He et al. 2016, "Deep Residual Learning for Image Recognition") for
spectrograms.

* ``resnet18`` / ``resnet34`` / ``resnet50``: the ImageNet layouts with a 1-channel input
  convolution, the deep baselines of Koutini et al. 2019 (MediaEval 2019: ResNet34 test PR-AUC
  .1021, overfitting on the small dataset motivated the receptive-field-regularised CP-ResNet).
* ``resnet2d``: the width-scalable ResNet of SoundFusion (ResNet34 layout with stage widths
  F, 2F, 4F, 8F; F = 16 / 32 / 64 for small / medium / large).

Global average pooling over frequency and time, so any input of at least 32 frames works.
"""
from __future__ import annotations

import torch
from torch import nn

from musetag.models.base import SPECTROGRAM, InputSpec, MusetagModel
from musetag.models.registry import register_model

KOUTINI = "Koutini et al. 2019, Emotion and Theme Recognition in Music with Frequency-Aware RF-Regularized CNNs (MediaEval 2019); He et al. 2016"
SOUNDFUSION = "Ausilio, Keshavarz, Prodan, SoundFusion: Music Recognition by Information Fusion of Different Representations; He et al. 2016"
_JAMENDO = InputSpec(SPECTROGRAM, (1, 96, 256), preset="jamendo96", min_length=32)
_FUSION = InputSpec(SPECTROGRAM, (2, 64, 431), preset="fusion64", min_length=32)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.downsample(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act(out + self.downsample(x))


def _projection(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(MusetagModel):
    """ImageNet-style ResNet: 7x7/2 stem convolution, 3x3/2 max pool, four stages (the first at
    stride 1, the others at stride 2), global average pooling, dropout, linear classifier."""

    def __init__(self, *, n_classes: int, in_channels: int = 1, layers: tuple[int, ...] = (2, 2, 2, 2),
                 width: int = 64, block: str = "basic", dropout: float = 0.0, default_input: InputSpec = _JAMENDO) -> None:
        super().__init__()
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, cin = [], width
        for i, n_blocks in enumerate(layers):
            w = width * 2 ** i
            blocks = []
            for j in range(n_blocks):
                blocks.append(block_cls(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, n_classes)
        self.default_input = default_input.with_channels(in_channels)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, width, F/4, T/4)
        x = self.stages(x)  # (B, num_features, F/32, T/32)
        return self.pool(x).flatten(1)  # (B, num_features)


def _register_imagenet(name: str, layers: tuple[int, ...], block: str) -> None:
    @register_model(name, family="resnet", paper=KOUTINI, default_input=_JAMENDO,
                    description=f"{name.upper()} ({block} blocks {list(layers)}) on 1-channel spectrograms (Koutini 2019 baseline)")
    def build(*, n_classes: int, in_channels: int = 1, width: int = 64, dropout: float = 0.0) -> ResNet:
        return ResNet(n_classes=n_classes, in_channels=in_channels, layers=layers, width=width, block=block,
                      dropout=dropout)

    build.__name__ = name
    build.__doc__ = f"{name} on spectrograms; ``width`` scales the stage widths (64 = ImageNet)."


_register_imagenet("resnet18", (2, 2, 2, 2), "basic")
_register_imagenet("resnet34", (3, 4, 6, 3), "basic")
_register_imagenet("resnet50", (3, 4, 6, 3), "bottleneck")


@register_model("resnet2d", family="resnet", paper=SOUNDFUSION, default_input=_FUSION,
                description="width-scalable ResNet34-layout 2-D ResNet (SoundFusion; F = 16/32/64)")
def resnet2d(*, n_classes: int, in_channels: int = 1, width: int = 16, layers: tuple[int, ...] = (3, 4, 6, 3),
             dropout: float = 0.3) -> ResNet:
    """SoundFusion ResNet2D: stage widths F, 2F, 4F, 8F (``width`` = F: 16 small, 32 medium, 64
    large), dropout before the output layer (the seed used 30-50 %)."""
    return ResNet(n_classes=n_classes, in_channels=in_channels, layers=tuple(layers), width=width, block="basic",
                  dropout=dropout, default_input=_FUSION)
