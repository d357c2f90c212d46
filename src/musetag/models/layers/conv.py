"""Convolution + batch normalisation + activation, the unit most CNNs here are made of."""
from __future__ import annotations

from torch import nn

_ACTS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "none": nn.Identity,
}


def make_act(name: str) -> nn.Module:
    return _ACTS[name]()


def conv_out_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one axis (floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class ConvBnAct(nn.Sequential):
    """``conv -> BatchNorm -> activation`` (2-D by default, ``dim=1`` for waveforms).

    ``order="conv_act_bn"`` puts the activation before the normalisation (as the SoundFusion
    SimpleCNN summary lists its layers).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str | None = None,
        *,
        act: str = "relu",
        bias: bool = False,
        dim: int = 2,
        order: str = "conv_bn_act",
    ) -> None:
        conv_cls = nn.Conv2d if dim == 2 else nn.Conv1d
        bn_cls = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
        if padding is None:  # "same" size for odd kernels at stride 1
            padding = (
                tuple(k // 2 for k in kernel_size) if isinstance(kernel_size, tuple) else kernel_size // 2
            )
        conv = conv_cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        if order == "conv_act_bn":
            super().__init__(conv, make_act(act), bn_cls(out_channels))
        else:
            super().__init__(conv, bn_cls(out_channels), make_act(act))
