"""Small single-purpose blocks, each naming the paper it comes from."""
from musetag.models.layers.attention import SelfAttentionEncoder, SinusoidalPositionalEncoding
from musetag.models.layers.conv import ConvBnAct, conv_out_size
from musetag.models.layers.freq_conv import FrequencyDependentConv2d
from musetag.models.layers.freq_coord import FrequencyCoordinates
from musetag.models.layers.mel import ConvMelSpectrogram, TorchaudioMelSpectrogram
from musetag.models.layers.pooling import GlobalMaxAvgPool
from musetag.models.layers.shake import ShakeShake, shake_shake

__all__ = [
    "ConvBnAct",
    "ConvMelSpectrogram",
    "FrequencyCoordinates",
    "FrequencyDependentConv2d",
    "GlobalMaxAvgPool",
    "SelfAttentionEncoder",
    "ShakeShake",
    "SinusoidalPositionalEncoding",
    "TorchaudioMelSpectrogram",
    "conv_out_size",
    "shake_shake",
]
