"""SoundFusion genre models (Ausilio, Keshavarz, Prodan, "SoundFusion: Music Recognition by
Information Fusion of Different Representations"; FMA-small 8 genres, GTZAN).

* ``simplecnn``: four conv blocks (5x5/2 pad 2, then 3x3/2 pad 1; ReLU then BatchNorm), global
  average pooling, linear: exactly 25,472 trainable parameters for stereo input and 8 classes.
* ``nnet1`` / ``nnet2`` (Zhang et al. 2016, "Improved Music Genre Classification with
  Convolutional Neural Networks"): three convolutions over time on the whole mel spectrum
  (length-4 kernels, 256 filters), max pooling after the first two (nnet1), global max + average
  pooling at the end, a 2048-unit dense layer; nnet2 makes the three convolutions one residual
  block (shortcut from the first convolution's output to the third's).
* ``vgg16`` (Simonyan & Zisserman 2015): the 13 convolutions of VGG16 (torchvision layout, so
  ``pretrained_path`` can load local torchvision ``vgg16`` weights for transfer learning), global
  average pooling and a linear output in place of the 4096-unit ImageNet head.
* ``resnet1d`` (Allamy & Koerich 2021, "1D CNN Architectures for Music Genre Classification"): the
  seed's table on raw waveform: a 3/3 convolution, nine residual blocks each followed by 3/3 max
  pooling, a 1x1 convolution: exactly 4,086,794 trainable parameters for 10 classes on 110,250
  samples. Residual block: conv3 -> BN -> LeakyReLU -> conv3 -> BN, plus the input (through a 1x1
  convolution + BN when the width changes), then LeakyReLU; convolutions have biases.
* ``soundfusion``: a 2-D spectrogram branch (``resnet2d``) and a 1-D waveform branch
  (``resnet1d``) fused by feature concatenation or by decision weighting.

Spectrogram inputs follow the seed's stereo 64-band mels (44.1 kHz, 1024-sample window, hop 512;
5 s segments = 431 frames); waveform inputs are mono 22.05 kHz, 5 s = 110,250 samples.
"""
from __future__ import annotations

import torch
from torch import nn

from musetag.errors import ModelError
from musetag.models.base import SPECTROGRAM, WAVEFORM, InputSpec, MusetagModel
from musetag.models.layers import ConvBnAct, ConvMelSpectrogram, GlobalMaxAvgPool
from musetag.models.weights import load_pretrained
from musetag.models.registry import create_model, register_model

PAPER = "Ausilio, Keshavarz, Prodan, SoundFusion: Music Recognition by Information Fusion of Different Representations"
ZHANG = "Zhang et al. 2016, Improved Music Genre Classification with Convolutional Neural Networks (in SoundFusion)"
VGG = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks (VGG16 transfer in SoundFusion)"
ALLAMY = "Allamy & Koerich 2021, 1D CNN Architectures for Music Genre Classification (ResNet1D in SoundFusion)"
_FUSION = InputSpec(SPECTROGRAM, (2, 64, 431), preset="fusion64", min_length=16)
_WAVE = InputSpec(WAVEFORM, (1, 110250), preset="waveform22k", min_length=3 ** 10, sample_rate=22050)


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


@register_model("simplecnn", family="simplecnn", paper=PAPER, default_input=_FUSION,
                description="SoundFusion SimpleCNN: 4 conv blocks, 25,472 parameters (stereo, 8 genres)")
def simplecnn(*, n_classes: int, in_channels: int = 1, width: int = 8, dropout: float = 0.0) -> SimpleCNN:
    """SoundFusion SimpleCNN (channels width x 1, 2, 4, 8; 25,472 parameters for stereo, 8 classes)."""
    return SimpleCNN(n_classes=n_classes, in_channels=in_channels, width=width, dropout=dropout)


# --------------------------------------------------------------------------------------------
# nnet1 / nnet2 (Zhang et al. 2016)


class _SamePad1d(nn.ConstantPad1d):
    """Zero padding that keeps the length through a stride-1 convolution of even kernel size."""

    def __init__(self, kernel: int) -> None:
        super().__init__(((kernel - 1) // 2, kernel // 2), 0.0)


class NNet(MusetagModel):
    def __init__(self, *, n_classes: int, in_channels: int = 2, n_mels: int = 64, residual: bool = False,
                 filters: int = 256, kernel: int = 4, hidden: int = 2048, dropout: float = 0.5) -> None:
        super().__init__()
        self.residual = residual
        cin = in_channels * n_mels  # the whole spectrum is the convolution's channel axis

        def conv(ci: int, act: bool = True) -> nn.Sequential:
            layers = [_SamePad1d(kernel), nn.Conv1d(ci, filters, kernel), nn.BatchNorm1d(filters)]
            return nn.Sequential(*layers, nn.ReLU(inplace=True)) if act else nn.Sequential(*layers)

        self.conv1 = conv(cin)
        self.pool1 = nn.Identity() if residual else nn.MaxPool1d(4)
        self.conv2 = conv(filters)
        self.pool2 = nn.Identity() if residual else nn.MaxPool1d(2)
        self.conv3 = conv(filters, act=not residual)
        self.act3 = nn.ReLU(inplace=True) if residual else nn.Identity()
        self.pool = GlobalMaxAvgPool()
        self.fc = nn.Sequential(nn.Linear(2 * filters, hidden), nn.ReLU(inplace=True))
        self.num_features = hidden
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, n_classes)
        self.default_input = InputSpec(SPECTROGRAM, (in_channels, n_mels, 431), preset="fusion64" if n_mels == 64 else None,
                                       min_length=8, fixed_freq=True)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1, 2)  # (B, C * F, T)
        h1 = self.pool1(self.conv1(x))  # (B, 256, T') (T/4 in nnet1)
        h = self.conv3(self.pool2(self.conv2(h1)))  # (B, 256, T'')
        if self.residual:
            h = self.act3(h + h1)  # shortcut: first conv's output -> third conv's output
        return self.fc(self.pool(h))  # max + mean over time -> (B, 512) -> (B, 2048)


@register_model("nnet1", family="nnet", paper=ZHANG, default_input=InputSpec(
    SPECTROGRAM, (2, 64, 431), preset="fusion64", min_length=8, fixed_freq=True),
    description="nnet1 (Zhang et al. 2016): 3 convolutions over time, max + average pooling")
def nnet1(*, n_classes: int, in_channels: int = 1, n_mels: int = 64, filters: int = 256, hidden: int = 2048,
          dropout: float = 0.5) -> NNet:
    """nnet1: conv-pool4-conv-pool2-conv, global max + average pooling, dense 2048."""
    return NNet(n_classes=n_classes, in_channels=in_channels, n_mels=n_mels, filters=filters, hidden=hidden,
                dropout=dropout)


@register_model("nnet2", family="nnet", paper=ZHANG, default_input=InputSpec(
    SPECTROGRAM, (2, 64, 431), preset="fusion64", min_length=8, fixed_freq=True),
    description="nnet2 (Zhang et al. 2016): nnet1 as one residual block")
def nnet2(*, n_classes: int, in_channels: int = 1, n_mels: int = 64, filters: int = 256, hidden: int = 2048,
          dropout: float = 0.5) -> NNet:
    """nnet2: three convolutions forming one residual block, global max + average pooling, dense 2048."""
    return NNet(n_classes=n_classes, in_channels=in_channels, n_mels=n_mels, residual=True, filters=filters,
                hidden=hidden, dropout=dropout)


# --------------------------------------------------------------------------------------------
# VGG16 (Simonyan & Zisserman 2015)

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(MusetagModel):
    def __init__(self, *, n_classes: int, in_channels: int = 2, width: int = 64, pretrained_path: str | None = None,
                 dropout: float = 0.5) -> None:
        super().__init__()
        layers, cin = [], in_channels
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                cout = v * width // 64
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
                cin = cout
        self.features = nn.Sequential(*layers)  # same indices as torchvision's vgg16().features
        if pretrained_path:
            load_pretrained(self.features, pretrained_path, first_conv="0.weight", in_channels=in_channels,
                            what="vgg16 features (torchvision layout)", key_prefix="features.")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, n_classes)
        self.default_input = InputSpec(SPECTROGRAM, (in_channels, 64, 431), preset="fusion64", min_length=32)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 512, F/32, T/32)
        return self.pool(x).flatten(1)  # (B, 512)


@register_model("vgg16", family="vgg", paper=VGG, default_input=InputSpec(SPECTROGRAM, (2, 64, 431), preset="fusion64",
                                                                           min_length=32),
                description="VGG16 convolutions + global pooling (transfer learning from local torchvision weights)")
def vgg16(*, n_classes: int, in_channels: int = 1, width: int = 64, pretrained_path: str | None = None,
          dropout: float = 0.5) -> VGG16:
    """VGG16 (``width`` 64 = original; ``pretrained_path`` = local torchvision vgg16 weights, the
    ``features.*`` keys are loaded and the RGB input convolution adapted to ``in_channels``)."""
    return VGG16(n_classes=n_classes, in_channels=in_channels, width=width, pretrained_path=pretrained_path,
                 dropout=dropout)


# --------------------------------------------------------------------------------------------
# ResNet1D (Allamy & Koerich 2021)

_RES1D = (128, 128, 256, 256, 256, 256, 256, 256, 512)


class Res1DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, slope: float = 0.01) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, kernel, padding=kernel // 2)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, kernel, padding=kernel // 2)
        self.bn2 = nn.BatchNorm1d(cout)
        self.act = nn.LeakyReLU(slope)
        self.shortcut = (nn.Identity() if cin == cout else
                         nn.Sequential(nn.Conv1d(cin, cout, 1), nn.BatchNorm1d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class ResNet1D(MusetagModel):
    def __init__(self, *, n_classes: int, in_channels: int = 1, width: int = 128, dropout: float = 0.3,
                 slope: float = 0.01) -> None:
        super().__init__()
        chans = [c * width // 128 for c in _RES1D]
        self.stem = nn.Sequential(nn.Conv1d(in_channels, chans[0], 3, stride=3), nn.BatchNorm1d(chans[0]),
                                  nn.LeakyReLU(slope))
        blocks, cin = [], chans[0]
        for cout in chans:
            blocks += [Res1DBlock(cin, cout, 3, slope), nn.MaxPool1d(3, 3)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head_conv = nn.Sequential(nn.Conv1d(cin, cin, 1), nn.BatchNorm1d(cin), nn.LeakyReLU(slope))
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.num_features = cin
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, n_classes)
        self.default_input = _WAVE.with_channels(in_channels)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 128, samples/3)
        x = self.blocks(x)  # (B, 512, samples/3^10) = (B, 512, 1) for 110,250 samples
        return self.pool(self.head_conv(x)).flatten(1)  # (B, 512)


@register_model("resnet1d", family="resnet1d", paper=ALLAMY, default_input=_WAVE,
                description="1-D ResNet on raw waveform, 9 residual blocks (4,086,794 params for 10 classes)")
def resnet1d(*, n_classes: int, in_channels: int = 1, width: int = 128, dropout: float = 0.3) -> ResNet1D:
    """ResNet1D on raw 22.05 kHz waveform (``width`` 128 = the seed's table; smaller = narrower)."""
    return ResNet1D(n_classes=n_classes, in_channels=in_channels, width=width, dropout=dropout)


# --------------------------------------------------------------------------------------------
# SoundFusion: 2-D spectrogram branch + 1-D waveform branch


class DecisionWeighting(nn.Module):
    """Decision-level fusion head: each branch's linear classifier on its own part of the
    concatenated features, ``logits = w * logits_2d + (1 - w) * logits_1d``. ``weight=None``
    learns ``w`` (a sigmoid-squashed scalar, initially 0.5); a number fixes it."""

    def __init__(self, dim_2d: int, dim_1d: int, n_classes: int, weight: float | None = None) -> None:
        super().__init__()
        self.dim_2d = dim_2d
        self.head_2d = nn.Linear(dim_2d, n_classes)
        self.head_1d = nn.Linear(dim_1d, n_classes)
        if weight is None:
            self.weight_logit = nn.Parameter(torch.zeros(()))
        else:
            if not 0.0 <= float(weight) <= 1.0:
                raise ModelError(f"fusion_weight must be within [0, 1], got {weight}")
            self.register_buffer("fixed_weight", torch.tensor(float(weight)))
            self.weight_logit = None

    @property
    def weight(self) -> torch.Tensor:
        return torch.sigmoid(self.weight_logit) if self.weight_logit is not None else self.fixed_weight

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        w = self.weight
        return w * self.head_2d(features[:, : self.dim_2d]) + (1 - w) * self.head_1d(features[:, self.dim_2d:])


class SoundFusion(MusetagModel):
    """Takes the waveform ``(B, C, samples)``; the spectrogram branch computes a 64-band log-mel
    (1024-sample window, hop 512) inside the model, normalised by a learned BatchNorm."""

    def __init__(self, *, n_classes: int, in_channels: int = 1, fusion: str = "concat", fusion_weight: float | None = None,
                 spec_model: str = "resnet2d", spec_args: dict | None = None, wave_model: str = "resnet1d",
                 wave_args: dict | None = None, sample_rate: int = 22050, n_mels: int = 64, dropout: float = 0.3) -> None:
        super().__init__()
        if fusion not in ("concat", "decision"):
            raise ModelError(f"fusion must be 'concat' (feature concatenation) or 'decision' (decision weighting), got {fusion!r}")
        self.fusion = fusion
        self.mel = ConvMelSpectrogram(sample_rate, 1024, 512, n_mels)
        self.spec_norm = nn.BatchNorm2d(in_channels)
        self.spec_branch = create_model(spec_model, n_classes=n_classes, in_channels=in_channels, **(spec_args or {}))
        self.wave_branch = create_model(wave_model, n_classes=n_classes, in_channels=in_channels, **(wave_args or {}))
        for branch, kind in ((self.spec_branch, SPECTROGRAM), (self.wave_branch, WAVEFORM)):
            if branch.default_input.kind != kind:
                raise ModelError(f"soundfusion: {branch.musetag_config['name']!r} is not a {kind} model")
            branch.classifier = nn.Identity()  # the fusion model owns the output layer
        self.dims = (self.spec_branch.num_features, self.wave_branch.num_features)
        self.num_features = sum(self.dims)
        self.fusion_weight = fusion_weight
        self.head_drop = nn.Dropout(dropout)
        self.classifier = self._make_classifier(n_classes)
        min_len = max(self.wave_branch.default_input.min_length,
                      (self.spec_branch.default_input.min_length - 1) * 512 + 1024)
        self.default_input = InputSpec(WAVEFORM, (in_channels, 110250), preset="waveform22k", min_length=min_len,
                                       sample_rate=sample_rate)

    def _make_classifier(self, n_classes: int) -> nn.Module:
        if self.fusion == "concat":
            return nn.Linear(self.num_features, n_classes)
        return DecisionWeighting(*self.dims, n_classes, self.fusion_weight)

    def reset_classifier(self, n_classes: int) -> None:
        self.classifier = self._make_classifier(n_classes)
        self._record_n_classes(n_classes)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec_norm(self.mel(x))  # (B, C, 64, frames)
        return torch.cat([self.spec_branch.forward_features(spec), self.wave_branch.forward_features(x)], dim=1)


@register_model("soundfusion", family="fusion", paper=PAPER, default_input=InputSpec(
    WAVEFORM, (1, 110250), preset="waveform22k", min_length=3 ** 10, sample_rate=22050),
    description="SoundFusion: resnet2d on log-mels + resnet1d on waveform, concatenation or decision weighting")
def soundfusion(*, n_classes: int, in_channels: int = 1, fusion: str = "concat", fusion_weight: float | None = None,
                spec_model: str = "resnet2d", spec_args: dict | None = None, wave_model: str = "resnet1d",
                wave_args: dict | None = None, dropout: float = 0.3) -> SoundFusion:
    """SoundFusion (``fusion="concat"`` = SoundFusion-1 feature concatenation, ``"decision"`` =
    decision weighting with a learned or fixed ``fusion_weight`` for the spectrogram branch).
    Branches: ``spec_model``/``wave_model`` with ``spec_args``/``wave_args`` (defaults: resnet2d
    width 16, resnet1d width 32)."""
    return SoundFusion(n_classes=n_classes, in_channels=in_channels, fusion=fusion, fusion_weight=fusion_weight,
                       spec_model=spec_model, spec_args={"width": 16, **(spec_args or {})}, wave_model=wave_model,
                       wave_args={"width": 32, **(wave_args or {})}, dropout=dropout)
