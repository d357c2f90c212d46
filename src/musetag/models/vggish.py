"""The VGG-ish baseline of the MediaEval 2019 Emotion and Theme Recognition task (Bogdanov et al.
2019, "MediaEval 2019: Emotion and Theme Recognition in Music Using Jamendo"; test PR-AUC .1077),
after the fully convolutional tagger of Choi et al. 2016 ("Automatic tagging using deep
convolutional neural networks").

Five 3x3 convolutions (64, 128, 128, 128, 64 channels) with batch normalisation, ReLU and max
pooling ((2,4), (2,4), (2,4), (3,5), (4,4)) on 96-band mels of 1366 frames (29.1 s); dropout 0.5
and a dense output layer. The last pooling is a global max pool, which equals the (4,4) pool at
the documented size and lets any clip of at least 320 frames through.

``act``: the activation after each batch normalisation. The published baseline (upstream
``scripts/baseline/model.py`` of MTG/mtg-jamendo-dataset, weights ``best_model.pth``) uses ELU:
build it with ``act="elu"`` (what :mod:`musetag.inference.upstream` does; its weights load with the
``mtg-baseline`` key mapping). The default stays ``"relu"`` so that packages written before the
argument existed rebuild the network they were trained with. Convolutions have biases, as upstream.
Upstream applies its dropout with a fresh ``nn.Dropout`` module, which stays in training mode
even in ``eval()``; here dropout is an ordinary layer (off in evaluation), which is how the golden
scores of the published model were computed.
"""
from __future__ import annotations

import torch
from torch import nn

from musetag.errors import ModelError
from musetag.models.base import SPECTROGRAM, InputSpec, MusetagModel
from musetag.models.layers import ConvBnAct
from musetag.models.registry import register_model

PAPER = "Bogdanov et al. 2019, MediaEval 2019 Emotion and Theme Recognition baseline (VGG-ish, after Choi et al. 2016)"
_INPUT = InputSpec(SPECTROGRAM, (1, 96, 1366), preset="jamendo96", min_length=320)


class VGGishBaseline(MusetagModel):
    def __init__(self, *, n_classes: int, in_channels: int = 1, channels: tuple[int, ...] = (64, 128, 128, 128, 64),
                 pools: tuple[tuple[int, int], ...] = ((2, 4), (2, 4), (2, 4), (3, 5)), dropout: float = 0.5,
                 act: str = "relu") -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(in_channels)
        blocks, cin, taps = [], in_channels, {}
        for i, cout in enumerate(channels):
            taps[f"conv{i + 1}"] = f"features.{len(blocks)}"
            blocks.append(ConvBnAct(cin, cout, 3, 1, 1, act=act, bias=True))
            if i < len(pools):
                blocks.append(nn.MaxPool2d(pools[i]))
            cin = cout
        self.features = nn.Sequential(*blocks)
        #: the conv blocks an embedding may pool (:mod:`musetag.models.taps`), then ``features``
        self.embedding_taps = taps
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.num_features = cin
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, n_classes)
        min_t = 1
        for p in pools:
            min_t *= p[1]
        self.default_input = InputSpec(SPECTROGRAM, (in_channels, *_INPUT.shape[1:]), preset="jamendo96", min_length=min_t)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.input_bn(x))  # (B, 64, F/96, T/320)
        return self.pool(x).flatten(1)  # (B, 64)


@register_model("vggish_baseline", family="vgg", paper=PAPER, default_input=_INPUT,
                description="MediaEval 2019 VGG-ish baseline: 5 conv layers on 96-band mels")
def vggish_baseline(*, n_classes: int, in_channels: int = 1, channels: tuple[int, ...] = (64, 128, 128, 128, 64),
                    dropout: float = 0.5, act: str = "relu") -> VGGishBaseline:
    """MediaEval 2019 VGG-ish baseline: 5 conv layers on 96-band mels (``act="elu"``: the published one)."""
    from musetag.models.layers.conv import _ACTS

    if act not in _ACTS:
        raise ModelError(f"vggish_baseline: act must be one of {', '.join(_ACTS)}, got {act!r}")
    return VGGishBaseline(n_classes=n_classes, in_channels=in_channels, channels=tuple(channels), dropout=dropout,
                          act=act)
