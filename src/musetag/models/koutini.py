"""Receptive-field-regularised and frequency-aware ResNets (Koutini et al. 2019: "The Receptive
Field as a Regularizer in Deep Convolutional Neural Networks for Acoustic Scene Classification",
EUSIPCO 2019; "Receptive-Field-Regularized CNN Variants for Acoustic Scene Classification", DCASE
2019; "Emotion and Theme Recognition in Music with Frequency-Aware RF-Regularized CNNs",
MediaEval 2019: ensemble test PR-AUC .1546).

CP-ResNet: a 5x5/2 stem convolution, then three stages of four basic residual blocks (128, 256,
512 channels; 2x2 max pooling after blocks 1, 2 and 4 of the first stage, no other down-sampling),
global average pooling and a linear output (depth 26). Its maximum receptive field is set by one
hyper-parameter ``rho``: the first block keeps a 3x3 and a 1x1 convolution; of the 22 remaining
convolutions, taken in network order, the first ``rho`` are 3x3 and the others 1x1. ``rho = 7``
makes the whole first stage 3x3 plus the first convolution of stage 2; each step of ``rho``
changes one kernel, so the receptive field grows monotonically with ``rho`` (see
``musetag models --rf cp_resnet --arg rho=5``).

* ``fa_resnet``: frequency-aware CP-ResNet: every convolution also reads a frequency-coordinate
  channel (values -1 .. 1 from the lowest to the highest band), so filters know where in the
  spectrum they are (``freq_coords="all"``; ``"input"`` adds it to the input only).
* ``shake_fa_resnet``: the frequency-aware CP-ResNet with shake-shake blocks: two parallel
  residual branches merged by a random convex combination in training (independent random
  weights for the gradients) and 0.5/0.5 at test time.
"""
from __future__ import annotations

import torch
from torch import nn

from musetag.errors import ModelError
from musetag.models.base import SPECTROGRAM, InputSpec, MusetagModel
from musetag.models.layers import FrequencyCoordinates, ShakeShake
from musetag.models.registry import register_model

PAPER = "Koutini et al. 2019, Emotion and Theme Recognition in Music with Frequency-Aware RF-Regularized CNNs (MediaEval 2019)"
_INPUT = InputSpec(SPECTROGRAM, (1, 96, 256), preset="jamendo96", min_length=16)
N_ADJUSTABLE = 22
_BLOCKS_PER_STAGE = 4
_POOL_AFTER = (1, 2, 4)  # first stage: 2x2 max pooling after these blocks (1-based)


def cp_resnet_kernels(rho: int) -> list[list[tuple[int, int]]]:
    """Kernel sizes ``[stage][block] = (k1, k2)`` for receptive-field parameter ``rho``."""
    if isinstance(rho, bool) or not isinstance(rho, int) or not 0 <= rho <= N_ADJUSTABLE:
        raise ModelError(f"rho must be an integer between 0 and {N_ADJUSTABLE} (7 = the MediaEval setting), got {rho!r}")
    kernels = [[(3, 1)] + [None] * (_BLOCKS_PER_STAGE - 1)] + [[None] * _BLOCKS_PER_STAGE for _ in range(2)]
    remaining = rho
    for stage in range(3):
        for block in range(_BLOCKS_PER_STAGE):
            if kernels[stage][block] is not None:
                continue
            k1 = 3 if remaining > 0 else 1
            remaining -= k1 == 3
            k2 = 3 if remaining > 0 else 1
            remaining -= k2 == 3
            kernels[stage][block] = (k1, k2)
    return kernels


def _conv(cin: int, cout: int, k: int, coords: bool) -> nn.Module:
    conv = nn.Conv2d(cin + int(coords), cout, k, 1, k // 2, bias=False)
    return nn.Sequential(FrequencyCoordinates(), conv) if coords else conv


class _Branch(nn.Sequential):
    """conv(k1) -> BN -> ReLU -> conv(k2) -> BN."""

    def __init__(self, cin: int, cout: int, k1: int, k2: int, coords: bool) -> None:
        super().__init__(_conv(cin, cout, k1, coords), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         _conv(cout, cout, k2, coords), nn.BatchNorm2d(cout))


class CPBlock(nn.Module):
    """Basic residual block; with ``shake=True`` two branches merged by shake-shake."""

    def __init__(self, cin: int, cout: int, k1: int, k2: int, coords: bool, shake: bool) -> None:
        super().__init__()
        self.branch1 = _Branch(cin, cout, k1, k2, coords)
        self.branch2 = _Branch(cin, cout, k1, k2, coords) if shake else None
        self.shake = ShakeShake() if shake else None
        self.shortcut = (nn.Identity() if cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch1(x)
        if self.branch2 is not None:
            out = self.shake(out, self.branch2(x))
        return self.act(out + self.shortcut(x))


class CPResNet(MusetagModel):
    def __init__(self, *, n_classes: int, in_channels: int = 1, rho: int = 7, base_channels: int = 128,
                 freq_coords: str = "none", shake: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if freq_coords not in ("none", "input", "all"):
            raise ModelError(f"freq_coords must be 'none', 'input' or 'all', got {freq_coords!r}")
        self.rho = rho
        kernels = cp_resnet_kernels(rho)
        every = freq_coords == "all"
        self.input_coords = FrequencyCoordinates() if freq_coords != "none" else nn.Identity()
        cin = in_channels + int(freq_coords != "none")
        self.stem = nn.Sequential(nn.Conv2d(cin, base_channels, 5, 2, 2, bias=False), nn.BatchNorm2d(base_channels),
                                  nn.ReLU(inplace=True))
        stages, cin = [], base_channels
        for s in range(3):
            cout = base_channels * 2 ** s
            layers = []
            for b, (k1, k2) in enumerate(kernels[s]):
                layers.append(CPBlock(cin, cout, k1, k2, every, shake))
                cin = cout
                if s == 0 and b + 1 in _POOL_AFTER:
                    layers.append(nn.MaxPool2d(2, 2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, n_classes)
        self.default_input = _INPUT.with_channels(in_channels)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.input_coords(x))  # (B, 128, F/2, T/2)
        x = self.stages(x)  # (B, 512, F/16, T/16)
        return self.pool(x).flatten(1)  # (B, 512)


@register_model("cp_resnet", family="cp-resnet", paper=PAPER, default_input=_INPUT,
                description="CP-ResNet whose receptive field is set by rho (3x3 vs 1x1 kernels)")
def cp_resnet(*, n_classes: int, in_channels: int = 1, rho: int = 7, base_channels: int = 128,
              dropout: float = 0.0) -> CPResNet:
    """Receptive-field-regularised CP-ResNet (``rho`` 0-22; 7 in the MediaEval submission)."""
    return CPResNet(n_classes=n_classes, in_channels=in_channels, rho=rho, base_channels=base_channels, dropout=dropout)


@register_model("fa_resnet", family="cp-resnet", paper=PAPER, default_input=_INPUT,
                description="frequency-aware CP-ResNet (frequency-coordinate channel in [-1, 1])")
def fa_resnet(*, n_classes: int, in_channels: int = 1, rho: int = 7, base_channels: int = 128,
              freq_coords: str = "all", dropout: float = 0.0) -> CPResNet:
    """Frequency-aware CP-ResNet: a [-1, 1] frequency-coordinate channel is concatenated to the
    input of every convolution (``freq_coords="all"``) or of the first one only (``"input"``)."""
    return CPResNet(n_classes=n_classes, in_channels=in_channels, rho=rho, base_channels=base_channels,
                    freq_coords=freq_coords, dropout=dropout)


@register_model("shake_fa_resnet", family="cp-resnet", paper=PAPER, default_input=_INPUT,
                description="frequency-aware CP-ResNet with shake-shake residual blocks")
def shake_fa_resnet(*, n_classes: int, in_channels: int = 1, rho: int = 7, base_channels: int = 128,
                    freq_coords: str = "all", dropout: float = 0.0) -> CPResNet:
    """Shake-shake frequency-aware CP-ResNet (Gastaldi 2017 shake-shake in every block)."""
    return CPResNet(n_classes=n_classes, in_channels=in_channels, rho=rho, base_channels=base_channels,
                    freq_coords=freq_coords, shake=True, dropout=dropout)
