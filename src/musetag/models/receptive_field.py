"""Receptive-field tools (Koutini et al. 2019, "The Receptive Field as a Regularizer in Deep
Convolutional Neural Networks for Acoustic Scene Classification", EUSIPCO 2019; MediaEval 2019).

For the convolution and pooling layers along the main path of a CNN, in execution order::

    S_n  = S_{n-1} * s_n                     cumulative stride
    RF_n = RF_{n-1} + (k_n - 1) * S_{n-1}    maximum receptive field (S_0 = RF_0 = 1)

with ``k_n`` the (dilated) kernel size and ``s_n`` the stride of layer ``n``, per axis. The slides
write ``(k_n - 1) * S_n`` with ``S_n`` the stride *accumulated before* layer ``n`` (the spacing of
that layer's input units); read literally with the stride of layer ``n`` included, a single
3x3 convolution of stride 2 would see 5 inputs instead of 3, so we use the standard indexing.

Layers are discovered by running the model once on its documented input with forward hooks, so
any registered CNN works (timm models included). Shortcut/projection paths and the second branch
of a shake-shake block run in parallel with the main path and never widen the receptive field;
they are skipped (names ``downsample``/``shortcut``/``branch2``/``se``, or ``rf_skip = True``).
Parallel convolutions of different sizes over channel groups (MixConv, timm ``MixedConv2d``) count
as one layer with their largest kernel. 1-D layers after a 2-D input (models that read every mel
band as a channel, such as nnet1/nnet2) see all bands at once; their rows show kernel 1 along
frequency. Walking stops at the first global (adaptive) pooling, recurrent or attention layer.
A module may declare its own geometry with an ``rf_geometry`` attribute ``(kernel, stride)``: the
mel front end inside waveform models (``TorchaudioMelSpectrogram``: the STFT window and hop over
samples); the 2-D layers after it count along their time axis, so the table is in samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from musetag.models.layers.freq_conv import FrequencyDependentConv2d

_SKIP_NAMES = {"downsample", "shortcut", "branch2", "se", "segment_classifier"}
_CONVS = (nn.Conv1d, nn.Conv2d, FrequencyDependentConv2d)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
_GLOBAL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
           nn.RNNBase, nn.MultiheadAttention, nn.Linear)


@dataclass(frozen=True)
class RFLayer:
    """One row of the receptive-field table; tuples are per axis ((freq, time) or (time,))."""

    name: str
    kind: str
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    output_shape: tuple[int, ...]
    cumulative_stride: tuple[int, ...]
    receptive_field: tuple[int, ...]


def _as_tuple(v, n: int) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v)
    return (int(v),) * n


def _module_axes(module: nn.Module, n_axes: int) -> int:
    if isinstance(module, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)):
        return 1
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, FrequencyDependentConv2d)) or _is_mixed(module):
        return 2
    return n_axes


def _is_mixed(module: nn.Module) -> bool:
    return type(module).__name__ == "MixedConv2d"


def _layer_geometry(module: nn.Module, n_axes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Effective (dilated) kernel and stride of a conv/pool module."""
    if getattr(module, "rf_geometry", None) is not None:
        return module.rf_geometry
    if isinstance(module, FrequencyDependentConv2d):
        return module.kernel_size, module.stride
    if _is_mixed(module):  # parallel convolutions: the largest kernel bounds the receptive field
        parts = [_layer_geometry(m, n_axes) for m in module.children() if isinstance(m, nn.Conv2d)]
        kernel = tuple(max(p[0][i] for p in parts) for i in range(2))
        return kernel, parts[0][1]
    kernel = _as_tuple(module.kernel_size, n_axes)
    stride = _as_tuple(module.stride if module.stride is not None else module.kernel_size, n_axes)
    dilation = _as_tuple(getattr(module, "dilation", 1), n_axes)
    kernel = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    return kernel, stride


def rf_recurrence(layers: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Apply the recurrence to ``[(kernel, stride), ...]``; returns ``[(S_n, RF_n), ...]``."""
    out = []
    if not layers:
        return out
    n_axes = len(layers[0][0])
    cum, rf = (1,) * n_axes, (1,) * n_axes
    for kernel, stride in layers:
        rf = tuple(r + (k - 1) * s for r, k, s in zip(rf, kernel, cum))
        cum = tuple(s * t for s, t in zip(cum, stride))
        out.append((cum, rf))
    return out


def receptive_field(model: nn.Module, x: torch.Tensor | None = None) -> list[RFLayer]:
    """Per-layer cumulative stride and receptive field of ``model`` on input ``x`` (default: one
    example of ``model.default_input``)."""
    if x is None:
        x = model.default_input.example(batch=1)
    n_axes = x.dim() - 2
    named = dict(model.named_modules())
    skip_prefixes = [
        name + "." for name, m in named.items()
        if name and (name.rsplit(".", 1)[-1] in _SKIP_NAMES or getattr(m, "rf_skip", False))
    ]
    inner = {id(m.conv) for m in named.values() if isinstance(m, FrequencyDependentConv2d)}
    inner |= {id(c) for m in named.values() if _is_mixed(m) for c in m.modules() if c is not m}

    def skipped(name: str) -> bool:
        return any((name + ".").startswith(p) for p in skip_prefixes)

    events: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    handles = []
    for name, module in named.items():
        if id(module) in inner or skipped(name):
            continue
        if isinstance(module, _CONVS + _POOLS + _GLOBAL) or _is_mixed(module) or hasattr(module, "rf_geometry"):
            def hook(mod, _inp, out, name=name):
                shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
                events.append((name, mod, shape))
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    geometry, rows_meta = [], []
    for name, module, shape in events:
        if isinstance(module, _GLOBAL):
            break
        kernel, stride = _layer_geometry(module, _module_axes(module, n_axes))
        if len(kernel) != n_axes:  # e.g. a 1-D conv after a 2-D stack collapsed frequency
            if len(kernel) == 1 and n_axes == 2:
                kernel, stride = (1, kernel[0]), (1, stride[0])
            elif len(kernel) == 2 and n_axes == 1:  # 2-D layers on a front end's spectrogram: time axis
                kernel, stride = (kernel[1],), (stride[1],)
            else:
                break
        kind = "pool" if isinstance(module, _POOLS) else "conv"
        geometry.append((kernel, stride))
        rows_meta.append((name, kind, kernel, stride, shape))
    rows = []
    for (name, kind, kernel, stride, shape), (cum, rf) in zip(rows_meta, rf_recurrence(geometry)):
        rows.append(RFLayer(name, kind, kernel, stride, shape, cum, rf))
    return rows


def format_receptive_field(rows: list[RFLayer], title: str = "") -> str:
    """The table printed by ``musetag models --rf NAME``."""
    def fmt(t: tuple[int, ...]) -> str:
        return "x".join(str(v) for v in t)

    header = ("layer", "type", "kernel", "stride", "output", "cum. stride", "receptive field")
    body = [(r.name, r.kind, fmt(r.kernel), fmt(r.stride), fmt(r.output_shape), fmt(r.cumulative_stride),
             fmt(r.receptive_field)) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    if rows:
        axes = "frequency x time" if len(rows[-1].receptive_field) == 2 else "samples"
        lines.append(f"receptive field before global pooling: {fmt(rows[-1].receptive_field)} ({axes})")
    return "\n".join(lines)
