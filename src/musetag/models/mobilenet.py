"""MobileNetV2 for spectrograms and MobileNetV2 + self-attention (Sukhavasi & Adapa 2019, "Music
theme recognition using CNN and self-attention", MediaEval 2019, team AMLAG; after Adapa 2019,
"Urban Sound Tagging using Convolutional Neural Networks").

* ``mobilenetv2``: two 1x1 convolutions map the single-channel spectrogram to three channels,
  which feed an unmodified MobileNetV2 (Sandler et al. 2018; timm ``mobilenetv2_100``) whose
  last linear layer is replaced for the tag set. Documented input 96 x 4096 frames (the paper's
  first submission padded tracks to 6590 frames); global pooling accepts any length.
* ``mobilenetv2_attention``: the input (96 bands x 4096 frames in the paper) is split along time
  into segments of 256 frames (16 segments); each segment goes through the same modified
  MobileNetV2; the 16 segment embeddings, projected to 256 dimensions, pass through a 2-layer,
  4-head self-attention encoder with positional encoding, and two dense layers give the
  predictions. The MobileNetV2 features of every segment also give per-segment predictions,
  averaged over segments; training combines the losses of both predictions.
"""
from __future__ import annotations

import torch
from torch import nn

from musetag.errors import ModelError
from musetag.models.base import SPECTROGRAM, InputSpec, MusetagModel
from musetag.models.layers import SelfAttentionEncoder
from musetag.models.registry import register_model
from musetag.models.timm_models import create_timm_body

PAPER = "Sukhavasi & Adapa 2019, Music theme recognition using CNN and self-attention (MediaEval 2019)"
_INPUT = InputSpec(SPECTROGRAM, (1, 96, 4096), preset="jamendo96", min_length=32)
_ATT_INPUT = InputSpec(SPECTROGRAM, (1, 96, 4096), preset="jamendo96", min_length=256)


class ToRGB(nn.Sequential):
    """BatchNorm -> 1x1 conv (C -> 10) -> ReLU -> 1x1 conv (10 -> 3) -> ReLU (Adapa 2019)."""

    def __init__(self, in_channels: int, hidden: int = 10) -> None:
        super().__init__(nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, 3, 1), nn.ReLU(inplace=True))


class MobileNetV2Tagger(MusetagModel):
    """``mobilenetv2``: ToRGB -> MobileNetV2 (global average pooling) -> dropout -> linear."""

    def __init__(self, *, n_classes: int, in_channels: int = 1, variant: str = "mobilenetv2_100",
                 pretrained_path: str | None = None, dropout: float = 0.2) -> None:
        super().__init__()
        self.to_rgb = ToRGB(in_channels)
        self.body = create_timm_body(variant, 3, pretrained_path)
        self.num_features = int(self.body.num_features)
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, n_classes)
        self.default_input = _INPUT.with_channels(in_channels)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.to_rgb(x))  # (B, 1280)


class MobileNetV2Attention(MusetagModel):
    """``mobilenetv2_attention``.

    ``forward(x) -> logits`` (the self-attention prediction), ``(batch, n_classes)``.
    ``forward_with_segments(x) -> (logits, segment_logits)``: ``segment_logits`` is the mean over
    segments of the per-segment MobileNetV2 predictions, ``(batch, n_classes)``; the seed trains on
    the combined loss ``(loss(logits, y) + loss(segment_logits, y)) / 2`` (the authors' solver.py).
    ``forward_features(x)``: the attention branch's embedding before the last dense layer.
    Frames beyond a multiple of ``segment_frames`` are zero-padded to a whole segment.
    """

    def __init__(self, *, n_classes: int, in_channels: int = 1, segment_frames: int = 256, embed_dim: int = 256,
                 n_heads: int = 4, n_layers: int = 2, variant: str = "mobilenetv2_100",
                 pretrained_path: str | None = None, dropout: float = 0.2) -> None:
        super().__init__()
        self.segment_frames = segment_frames
        self.to_rgb = ToRGB(in_channels)
        self.body = create_timm_body(variant, 3, pretrained_path)
        cnn_features = int(self.body.num_features)
        self.segment_drop = nn.Dropout(dropout)
        self.segment_classifier = nn.Linear(cnn_features, n_classes)
        self.embed = nn.Linear(cnn_features, embed_dim)
        self.encoder = SelfAttentionEncoder(embed_dim, n_heads, n_layers, dropout=0.1)
        self.dense = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(inplace=True))  # first dense layer
        self.num_features = embed_dim
        self.head_drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, n_classes)  # second dense layer
        self.default_input = InputSpec(SPECTROGRAM, (in_channels, 96, 16 * segment_frames), preset="jamendo96",
                                       min_length=segment_frames)

    def segment_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, F, T) -> (B, n_segments, cnn_features)``."""
        self.check_input(x)
        batch, channels, n_freq, n_time = x.shape
        seg = self.segment_frames
        n_seg = -(-n_time // seg)
        if n_seg * seg != n_time:
            x = nn.functional.pad(x, (0, n_seg * seg - n_time))
        x = x.reshape(batch, channels, n_freq, n_seg, seg).permute(0, 3, 1, 2, 4)
        x = x.reshape(batch * n_seg, channels, n_freq, seg)  # (B * S, C, F, seg)
        feats = self.body(self.to_rgb(x))  # (B * S, 1280)
        return feats.reshape(batch, n_seg, -1)

    def _attention_features(self, seg_feats: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(seg_feats))  # (B, S, embed_dim)
        return self.dense(h.mean(dim=1))  # (B, embed_dim)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self._attention_features(self.segment_embeddings(x))

    def forward_with_segments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, segment_logits)``, both ``(batch, n_classes)`` (see the class docstring)."""
        seg_feats = self.segment_embeddings(x)
        logits = self.forward_head(self._attention_features(seg_feats))
        segment_logits = self.segment_classifier(self.segment_drop(seg_feats)).mean(dim=1)
        return logits, segment_logits

    def reset_classifier(self, n_classes: int) -> None:
        super().reset_classifier(n_classes)
        self.segment_classifier = nn.Linear(self.segment_classifier.in_features, n_classes)


@register_model("mobilenetv2", family="mobilenetv2", paper=PAPER, default_input=_INPUT,
                description="MobileNetV2 with two input convolutions mapping 1 channel to 3 (AMLAG 2019)")
def mobilenetv2(*, n_classes: int, in_channels: int = 1, variant: str = "mobilenetv2_100",
                pretrained_path: str | None = None, dropout: float = 0.2) -> MobileNetV2Tagger:
    """MobileNetV2 tagger (``variant`` any timm MobileNetV2 width, e.g. ``mobilenetv2_050``)."""
    if not variant.startswith("mobilenetv2"):
        raise ModelError(f"variant must be a timm MobileNetV2 (mobilenetv2_100, mobilenetv2_050, ...), got {variant!r}")
    return MobileNetV2Tagger(n_classes=n_classes, in_channels=in_channels, variant=variant,
                             pretrained_path=pretrained_path, dropout=dropout)


@register_model("mobilenetv2_attention", family="mobilenetv2", paper=PAPER, default_input=_ATT_INPUT,
                description="MobileNetV2 per 256-frame segment + 2-layer 4-head self-attention (AMLAG 2019)")
def mobilenetv2_attention(*, n_classes: int, in_channels: int = 1, segment_frames: int = 256, embed_dim: int = 256,
                          n_heads: int = 4, n_layers: int = 2, variant: str = "mobilenetv2_100",
                          pretrained_path: str | None = None, dropout: float = 0.2) -> MobileNetV2Attention:
    """MobileNetV2 + self-attention; also ``forward_with_segments(x) -> (logits, segment_logits)``."""
    if not variant.startswith("mobilenetv2"):
        raise ModelError(f"variant must be a timm MobileNetV2 (mobilenetv2_100, mobilenetv2_050, ...), got {variant!r}")
    return MobileNetV2Attention(n_classes=n_classes, in_channels=in_channels, segment_frames=segment_frames,
                                embed_dim=embed_dim, n_heads=n_heads, n_layers=n_layers, variant=variant,
                                pretrained_path=pretrained_path, dropout=dropout)
