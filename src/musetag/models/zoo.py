"""Library side of ``musetag models``: the zoo table and receptive-field reports."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from musetag.errors import ModelError
from musetag.models.base import count_parameters
from musetag.models.receptive_field import format_receptive_field, receptive_field
from musetag.models.registry import create_model, list_models, model_info


@dataclass(frozen=True)
class ZooRow:
    name: str
    family: str
    paper: str
    input_kind: str
    input_shape: tuple[int, ...]
    parameters: int | None  # None: set by the arguments it is built with (probe_average's members)
    output_ok: bool | None  # None when no input was given to check


def model_table(*, n_classes: int = 56, in_channels: int | None = None, input_shape: tuple[int, ...] | None = None,
                family: str | None = None) -> list[ZooRow]:
    """One row per registered model; with ``input_shape`` also checks each model accepts it."""
    rows = []
    names = list_models(family)
    if not names:
        from musetag.errors import ConfigError

        families = sorted({model_info(n).family for n in list_models()})
        raise ConfigError(f"no model of family {family!r}; families: {', '.join(families)}")
    for name in names:
        info = model_info(name)
        channels = in_channels or (input_shape[0] if input_shape else info.default_input.shape[0])
        try:
            model = create_model(name, n_classes=n_classes, in_channels=channels)
        except ModelError:  # built only from its arguments (probe_average: the heads it averages)
            spec = info.default_input
            rows.append(ZooRow(name, info.family, info.paper, spec.kind, tuple(spec.shape), None, None))
            continue
        ok = None
        spec = model.default_input
        if input_shape is not None:
            ok = False
            if len(input_shape) == len(spec.shape):
                try:
                    model.eval()
                    with torch.no_grad():
                        out = model(torch.zeros(1, *input_shape))
                    ok = tuple(out.shape) == (1, n_classes)
                except (ModelError, RuntimeError):
                    ok = False
        rows.append(ZooRow(name, info.family, info.paper, spec.kind, tuple(spec.shape), count_parameters(model), ok))
    return rows


def format_model_table(rows: list[ZooRow]) -> str:
    header = ["name", "family", "input", "parameters", "paper"]
    if any(r.output_ok is not None for r in rows):
        header.insert(4, "accepts input")
    body = []
    for r in rows:
        params = "by its arguments" if r.parameters is None else f"{r.parameters:,}"
        line = [r.name, r.family, f"{r.input_kind} {'x'.join(map(str, r.input_shape))}", params]
        if any(row.output_ok is not None for row in rows):
            line.append("-" if r.output_ok is None else "yes" if r.output_ok else "no")
        line.append(r.paper)
        body.append(line)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
           "  ".join("-" * w for w in widths[:-1]) + "  " + "-" * 5]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    return "\n".join(out)


def receptive_field_report(name: str, *, n_classes: int = 56, input_shape: tuple[int, ...] | None = None,
                           in_channels: int | None = None, **kwargs) -> str:
    """The receptive-field table of one model (documented input unless ``input_shape``)."""
    info = model_info(name)
    channels = in_channels or (input_shape[0] if input_shape else info.default_input.shape[0])
    model = create_model(name, n_classes=n_classes, in_channels=channels, **kwargs)
    x = model.default_input.example(1) if input_shape is None else torch.zeros(1, *input_shape)
    rows = receptive_field(model, x)
    if not rows:
        return (f"{name}: no single convolutional path to report (e.g. a fusion of two branches); "
                f"show the branches instead, e.g. `musetag models --rf resnet2d` and `--rf resnet1d`.")
    title = f"{name} ({info.paper}); input {'x'.join(map(str, x.shape[1:]))}"
    return format_receptive_field(rows, title)
