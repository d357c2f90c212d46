"""The FCN, Musicnn and CRNN of Won et al. 2020 ("Evaluation of CNN-based automatic music tagging
models", SMC 2020; code: minzwon/sota-music-tagging-models), layer for layer, so their published
weights (MTG-Jamendo top-50, MagnaTagATune, Million Song Dataset) load key for key (see
:func:`musetag.training.transfer.convert_upstream`, mapping ``won2020``).

Input: a 16 kHz mono waveform ``(batch, 1, samples)`` (the zoo's waveform layout, as ``resnet1d``;
more channels are averaged). Every model starts with the upstream front end,
:class:`~musetag.models.layers.TorchaudioMelSpectrogram` (torchaudio ``MelSpectrogram(sample_rate=16000,
n_fft=512, f_min=0, f_max=8000, n_mels=96)`` + ``AmplitudeToDB``: 96 x (1 + samples // 256) dB)
followed by ``BatchNorm2d(1)`` (``spec_bn``).

* ``won_fcn`` (Choi et al. 2016): five blocks ``Conv2d 3x3 (bias) -> BN -> ReLU -> MaxPool``,
  channels 64/128/128/128/64, pools (2,4) (2,4) (2,4) (3,5) (4,4): 29 s (464,000 samples, 1813
  frames) becomes 1 x 1; dropout 0.5, ``Linear(64, n_classes)``. Longer inputs keep the same pools
  and are max-pooled over what remains (identical at the published size). ``forward_features``:
  the 64-d vector after the last pooling.
* ``won_musicnn`` (Pons et al. 2018, the version in Won et al.'s code): front end of two vertical
  ``Conv2d`` (204 filters of 67x7 and 38x7, ReLU after BN, max over frequency) and three horizontal
  ``Conv1d`` on the frequency-averaged spectrogram (51 filters of 129, 65, 33); back end of three
  ``Conv1d(7)`` layers (``backend`` channels: 64, or 512 for msd) with residual connections on the
  2nd and 3rd; max and mean over time of [front end, res1, res2, res3]; ``dense1`` (``dense``
  units: 200, or 500 for msd) -> ``BatchNorm1d`` -> ReLU, dropout 0.5, ``Linear`` to the classes.
  ``forward_features``: the ReLU output of ``dense1``/``bn`` (200-d or 500-d), before the dropout
  and the final Linear. Published on 3 s chunks (48,000 samples).
* ``won_crnn`` (Choi et al. 2017): four conv blocks (64/128/128/128, pools (2,2) (3,3) (4,4) (4,4))
  reduce 96 bands to 1; a two-layer GRU(128 -> 32) reads the time steps; ``forward_features`` is
  its last output (32-d); dropout 0.5, ``Linear(32, n_classes)``.

No sigmoid inside (upstream applies one at the end): scores are ``sigmoid(forward(x))``.
Module and buffer names follow upstream, except the output layer, which is ``classifier``
(upstream ``dense``, or ``dense2`` in Musicnn).
"""
from __future__ import annotations

import torch
from torch import nn

from musetag.errors import ModelError
from musetag.models.base import WAVEFORM, InputSpec, MusetagModel
from musetag.models.layers import TorchaudioMelSpectrogram
from musetag.models.registry import register_model

PAPER = "Won et al. 2020, Evaluation of CNN-based Automatic Music Tagging Models (sota-music-tagging-models)"
SAMPLE_RATE = 16000
HOP = 256
FCN_SAMPLES = 464000  # 29 s, the published input of fcn and crnn
MUSICNN_SAMPLES = 48000  # 3 s
_FCN_POOLS = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4))
_CRNN_POOLS = ((2, 2), (3, 3), (4, 4), (4, 4))


def _spec(length: int, min_frames: int) -> InputSpec:
    return InputSpec(WAVEFORM, (1, length), preset="waveform16k", min_length=max(HOP + 1, (min_frames - 1) * HOP),
                     sample_rate=SAMPLE_RATE)



def _conv_layers(module: nn.Module, channels, pools) -> tuple[int, int]:
    """Upstream's ``layer1..layerN`` Conv2d-BN-ReLU-MaxPool blocks on ``module`` (the state-dict names);
    returns (output channels, the shortest input in frames: the product of the time pools)."""
    cin, frames = 1, 1
    for i, (cout, pool) in enumerate(zip(channels, pools), start=1):
        setattr(module, f"layer{i}", Conv2dBlock(cin, cout, pool))
        cin, frames = cout, frames * pool[1]
    return cin, frames

class Conv2dBlock(nn.Module):
    """Upstream ``Conv_2d``: ``Conv2d 3x3 (bias, padding 1) -> BatchNorm2d -> ReLU -> MaxPool2d(pool)``."""

    def __init__(self, cin: int, cout: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.mp = nn.MaxPool2d(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mp(self.relu(self.bn(self.conv(x))))


class Conv1dBlock(nn.Module):
    """Upstream ``Conv_1d`` with pooling 1: ``Conv1d(k, padding k // 2) -> BatchNorm1d -> ReLU``."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, padding=kernel // 2)
        self.bn = nn.BatchNorm1d(cout)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class VerticalConv(nn.Module):
    """Upstream ``Conv_V``: ``Conv2d (f, t)`` padded in time only -> BN -> ReLU -> max over frequency."""

    def __init__(self, cout: int, shape: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, cout, shape, padding=(0, shape[1] // 2))
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, F, T) -> (B, cout, T)
        return self.relu(self.bn(self.conv(x))).amax(dim=2)


class HorizontalConv(nn.Module):
    """Upstream ``Conv_H``: mean over frequency -> ``Conv1d(k, padding k // 2)`` -> BN -> ReLU."""

    def __init__(self, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, cout, kernel, padding=kernel // 2)
        self.bn = nn.BatchNorm1d(cout)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, F, T) -> (B, cout, T)
        return self.relu(self.bn(self.conv(x.mean(dim=2))))


class _WonBase(MusetagModel):
    """Shared front end: waveform ``(B, C, S)`` -> channel mean -> mel dB -> ``spec_bn`` -> ``(B, 1, 96, T)``."""

    def __init__(self, n_mels: int = 96) -> None:
        super().__init__()
        self.spec = TorchaudioMelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=512, f_min=0.0, f_max=8000.0, n_mels=n_mels)
        self.spec_bn = nn.BatchNorm2d(1)
        #: training only: a callable applied to the normalised mel ``(B, 1, 96, T)`` (SpecAugment of a
        #: waveform model, set by the trainer from ``augment.specaugment``); not part of the weights
        self.spec_augment = None

    def _mel(self, x: torch.Tensor) -> torch.Tensor:
        wave = x.mean(dim=1) if x.shape[1] != 1 else x[:, 0]  # (B, S)
        mel = self.spec_bn(self.spec(wave).unsqueeze(1))
        if self.training and self.spec_augment is not None:
            mel = self.spec_augment(mel)
        return mel


def _check_in_channels(in_channels: int) -> None:
    if in_channels < 1:
        raise ModelError(f"in_channels must be at least 1, got {in_channels}")


class WonFCN(_WonBase):
    def __init__(self, *, n_classes: int, in_channels: int = 1, dropout: float = 0.5) -> None:
        super().__init__()
        chans = (64, 128, 128, 128, 64)
        cin, frames = _conv_layers(self, chans, _FCN_POOLS)
        self.num_features = cin
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(cin, n_classes)
        self.default_input = _spec(FCN_SAMPLES, frames).with_channels(in_channels)
        #: the layers an embedding may pool (:mod:`musetag.models.taps`), then ``features``
        self.embedding_taps = {f"layer{i}": f"layer{i}" for i in range(1, 6)}

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._mel(x)  # (B, 1, 96, T)
        for i in range(1, 6):
            x = getattr(self, f"layer{i}")(x)  # after layer5: (B, 64, 1, T / 1280)
        return x.amax(dim=(2, 3))  # (B, 64); 1 x 1 already at the published 29 s


class WonMusicnn(_WonBase):
    def __init__(self, *, n_classes: int, in_channels: int = 1, backend: int = 64, dense: int = 200,
                 dropout: float = 0.5) -> None:
        super().__init__()
        n_mels = 96
        self.layers = nn.ModuleList([
            VerticalConv(204, (int(0.7 * n_mels), 7)),
            VerticalConv(204, (int(0.4 * n_mels), 7)),
            HorizontalConv(51, 129),
            HorizontalConv(51, 65),
            HorizontalConv(51, 33),
        ])
        for i in (0, 1, 3, 4):  # parallel to the widest-in-time branch (129 frames): off the RF main path
            self.layers[i].rf_skip = True
        front = 204 * 2 + 51 * 3  # 561
        self.layer1 = Conv1dBlock(front, backend, 7)
        self.layer2 = Conv1dBlock(backend, backend, 7)
        self.layer3 = Conv1dBlock(backend, backend, 7)
        self.dense1 = nn.Linear((front + 3 * backend) * 2, dense)
        self.bn = nn.BatchNorm1d(dense)
        self.relu = nn.ReLU()
        self.num_features = dense
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(dense, n_classes)
        self.default_input = _spec(MUSICNN_SAMPLES, 1).with_channels(in_channels)
        #: the layers an embedding may pool (:mod:`musetag.models.taps`; ``layer2``/``layer3`` before
        #: their residual sums), then ``features``
        self.embedding_taps = {**{f"front{i + 1}": f"layers.{i}" for i in range(5)},
                               **{f"layer{i}": f"layer{i}" for i in range(1, 4)}}

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._mel(x)  # (B, 1, 96, T)
        out = torch.cat([layer(x) for layer in self.layers], dim=1)  # (B, 561, T)
        res1 = self.layer1(out)
        res2 = self.layer2(res1) + res1
        res3 = self.layer3(res2) + res2
        out = torch.cat([out, res1, res2, res3], dim=1)  # (B, 561 + 3 * backend, T)
        pooled = torch.cat([out.amax(dim=2), out.mean(dim=2)], dim=1)  # (B, 2 * (561 + 3 * backend))
        return self.relu(self.bn(self.dense1(pooled)))  # (B, dense)


class WonCRNN(_WonBase):
    def __init__(self, *, n_classes: int, in_channels: int = 1, hidden: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        chans = (64, 128, 128, 128)
        cin, frames = _conv_layers(self, chans, _CRNN_POOLS)
        self.layer5 = nn.GRU(cin, hidden, 2, batch_first=True)
        self.num_features = hidden
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, n_classes)
        self.default_input = _spec(FCN_SAMPLES, frames).with_channels(in_channels)
        #: the layers an embedding may pool (:mod:`musetag.models.taps`; ``layer5``: the GRU's outputs), then ``features``
        self.embedding_taps = {f"layer{i}": f"layer{i}" for i in range(1, 6)}

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._mel(x)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)  # after layer4: (B, 128, 1, T / 96)
        x = x.amax(dim=2).transpose(1, 2)  # (B, T / 96, 128); the frequency axis is 1 at 96 bands
        out, _ = self.layer5(x)
        return out[:, -1]  # (B, hidden)


@register_model("won_fcn", family="won2020", paper=PAPER, default_input=_spec(FCN_SAMPLES, 1280),
                description="Won et al. 2020 FCN (Choi 2016) with its torchaudio mel front end, on 16 kHz waveforms")
def won_fcn(*, n_classes: int, in_channels: int = 1, dropout: float = 0.5) -> WonFCN:
    """Won et al. 2020 FCN: mel front end + 5 conv blocks on 29 s of 16 kHz audio."""
    _check_in_channels(in_channels)
    return WonFCN(n_classes=n_classes, in_channels=in_channels, dropout=dropout)


@register_model("won_musicnn", family="won2020", paper=PAPER, default_input=_spec(MUSICNN_SAMPLES, 1),
                description="Won et al. 2020 Musicnn (Pons 2018) with its mel front end, on 16 kHz waveforms")
def won_musicnn(*, n_classes: int, in_channels: int = 1, backend: int = 64, dense: int = 200,
                dropout: float = 0.5) -> WonMusicnn:
    """Won et al. 2020 Musicnn: ``backend`` 64 / ``dense`` 200 (mtat, jamendo) or 512 / 500 (msd)."""
    _check_in_channels(in_channels)
    return WonMusicnn(n_classes=n_classes, in_channels=in_channels, backend=backend, dense=dense, dropout=dropout)


@register_model("won_crnn", family="won2020", paper=PAPER, default_input=_spec(FCN_SAMPLES, 96),
                description="Won et al. 2020 CRNN (Choi 2017) with its mel front end, on 16 kHz waveforms")
def won_crnn(*, n_classes: int, in_channels: int = 1, hidden: int = 32, dropout: float = 0.5) -> WonCRNN:
    """Won et al. 2020 CRNN: mel front end + 4 conv blocks + 2-layer GRU on 29 s of 16 kHz audio."""
    _check_in_channels(in_channels)
    return WonCRNN(n_classes=n_classes, in_channels=in_channels, hidden=hidden, dropout=dropout)
