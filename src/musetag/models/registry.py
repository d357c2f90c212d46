"""The model registry: one factory for every architecture (the timm pattern).

Family modules register their builders with ``@register_model``; they are imported the first time
the registry is consulted, never at ``import musetag``. Names of the form ``timm:<name>`` build any
timm architecture with random weights (see :mod:`musetag.models.timm_models`).
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from musetag.errors import ModelError
from musetag.models.base import InputSpec, MusetagModel, _check_positive

# modules holding @register_model builders, imported lazily on first use
_FAMILY_MODULES = (
    "musetag.models.vggish",
    "musetag.models.resnet",
    "musetag.models.crnn",
    "musetag.models.koutini",
    "musetag.models.bour",
    "musetag.models.mobilenet",
    "musetag.models.timm_models",
    "musetag.models.soundfusion",
    "musetag.models.won2020",
    "musetag.models.probe",
)

# arguments recorded in musetag_config only when they help rebuild the architecture; a local
# pretrained checkpoint is a one-off initialisation, so a checkpoint never points back at it
_NOT_RECORDED = ("pretrained_path",)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before building it."""

    name: str
    family: str
    paper: str
    default_input: InputSpec
    description: str
    builder: Callable[..., MusetagModel]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "paper": self.paper,
            "description": self.description,
            "default_input": self.default_input.to_dict(),
        }


_REGISTRY: dict[str, ModelInfo] = {}
_LOADED = {"done": False}
# name prefix -> resolver of a whole family of names (``timm:<name>``, registered by timm_models); the
# registry knows family modules only by name, so no family module is imported from here
_PREFIXES: dict[str, Callable[[str], ModelInfo]] = {}


def register_model(
    name: str, *, family: str, paper: str, default_input: InputSpec, description: str = ""
) -> Callable[[Callable[..., MusetagModel]], Callable[..., MusetagModel]]:
    """Decorator registering ``builder(*, n_classes, in_channels=1, **kwargs) -> MusetagModel``."""

    def wrap(builder: Callable[..., MusetagModel]) -> Callable[..., MusetagModel]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model name {name!r} is registered twice")
        doc = description or (inspect.getdoc(builder) or "").split("\n")[0]
        _REGISTRY[name] = ModelInfo(name, family, paper, default_input, doc, builder)
        return builder

    return wrap


def register_prefix(prefix: str, resolve: Callable[[str], ModelInfo]) -> None:
    """Names starting with ``prefix`` (e.g. ``"timm:"``) are resolved by ``resolve(name) -> ModelInfo``."""
    _PREFIXES[prefix] = resolve


def _load_families() -> None:
    if _LOADED["done"]:
        return
    for module in _FAMILY_MODULES:
        importlib.import_module(module)
    _LOADED["done"] = True


def list_models(family: str | None = None) -> list[str]:
    """Registered model names (sorted), optionally only those of one family."""
    _load_families()
    return sorted(n for n, info in _REGISTRY.items() if family is None or info.family == family)


def _unknown(name: str) -> ModelError:
    names = list_models()
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ModelError(
        f"unknown model {name!r}.{hint} Known models: {', '.join(names)}; any timm architecture "
        f"as 'timm:<name>'. `musetag models` lists them with their papers."
    )


def model_info(name: str) -> ModelInfo:
    """Family, source paper and documented input of a registered model (or ``timm:<name>``)."""
    _load_families()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for prefix, resolve in _PREFIXES.items():
        if name.startswith(prefix):
            return resolve(name)
    raise _unknown(name)


def create_model(name: str, *, n_classes: int, in_channels: int = 1, **kwargs: Any) -> MusetagModel:
    """Build a registered model with random initial weights.

    ``n_classes``: number of outputs (logits). ``in_channels``: input channels (1 = mono
    spectrogram or waveform, 2 = stereo). Other keyword arguments are model specific (see the
    builder's docstring, e.g. ``rho`` for ``cp_resnet`` or ``width`` for ``resnet2d``). The model
    gets ``musetag_config = {"name": name, "args": {...}}`` so that
    ``create_model(cfg["name"], **cfg["args"])`` rebuilds the same architecture.
    """
    if not isinstance(name, str):
        raise ModelError(f"model name must be a string, got {name!r}")
    n_classes = _check_positive("n_classes", n_classes)
    in_channels = _check_positive("in_channels", in_channels)
    info = model_info(name)
    builder = info.builder
    if name.startswith("timm:"):
        kwargs = {"timm_name": name[len("timm:"):], **kwargs}
    _check_kwargs(name, builder, kwargs)
    model = builder(n_classes=n_classes, in_channels=in_channels, **kwargs)
    if getattr(model, "default_input", None) is None:
        model.default_input = info.default_input.with_channels(in_channels)
    args = {"n_classes": n_classes, "in_channels": in_channels}
    args.update({k: v for k, v in kwargs.items() if k not in _NOT_RECORDED and k != "timm_name"})
    model.musetag_config = {"name": name, "args": _plain(args)}
    return model


def _check_kwargs(name: str, builder: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p not in ("n_classes", "in_channels")]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ModelError(
            f"model {name!r} got unknown argument(s) {', '.join(unknown)}; it accepts: "
            f"{', '.join(accepted) or '(none besides n_classes, in_channels)'}"
        )


def _plain(value: Any) -> Any:
    """JSON/TOML-friendly copy (tuples -> lists) so the config survives a round trip."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
