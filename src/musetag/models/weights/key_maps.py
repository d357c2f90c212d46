"""Key mappings: rename (and transform) a source's weights to a target model's parameter names.

A mapping is a callable ``fn(state_dict, model) -> state_dict``. The named ones (``--init-map NAME``)
are registered here with :func:`register_key_mapping`; :func:`get_key_mapping` also understands
``prefix:OLD=NEW`` and ``module:function`` specs. The strict renames of published upstream weights
(``mtg-baseline``, ``won2020``) are in :mod:`musetag.models.weights.upstream`. Used by
:mod:`musetag.training.transfer` (see its docstring for the user-facing description).
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from musetag.errors import ConfigError, ModelError


def tensors_only(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def classifier_prefix(model: nn.Module) -> str | None:
    """The state_dict prefix of the model's classifier (``"classifier."``), or None."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "classifier", None)
    if head is None:
        return None
    for name, module in model.named_modules():
        if module is head and name:
            return name + "."
    return None


KeyMap = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]

# ------------------------------------------------------------------------------------ key mappings

_KEY_MAPPINGS: dict[str, tuple[KeyMap, str]] = {}


def register_key_mapping(name: str, description: str = "") -> Callable[[KeyMap], KeyMap]:
    """Decorator: make ``fn(state_dict, model) -> state_dict`` available as ``--init-map name``."""

    def wrap(fn: KeyMap) -> KeyMap:
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        _KEY_MAPPINGS[name] = (fn, doc)
        return fn

    return wrap


def list_key_mappings() -> dict[str, str]:
    """Registered mapping names and their one-line descriptions."""
    return {name: doc for name, (_, doc) in sorted(_KEY_MAPPINGS.items())}


def _rename_prefix(sd: Mapping[str, torch.Tensor], old: str, new: str) -> dict[str, torch.Tensor]:
    return {(new + k[len(old):] if k.startswith(old) else k): v for k, v in sd.items()}


@register_key_mapping("none")
def _identity(sd, model):
    """Keep the source names as they are."""
    return dict(sd)


@register_key_mapping("strip-wrappers")
def strip_wrappers(sd, model):
    """Drop ``module.`` (DataParallel, DDP, AveragedModel) and ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for k, v in sd.items():
        if k == "n_averaged":
            continue
        changed = True
        while changed:
            changed = False
            for prefix in ("module.", "_orig_mod."):
                if k.startswith(prefix):
                    k, changed = k[len(prefix):], True
        out[k] = v
    return out


@register_key_mapping("lightning")
def lightning(sd, model):
    """PyTorch Lightning checkpoints: drop the ``model.`` (or ``net.``) attribute prefix."""
    sd = strip_wrappers(sd, model)
    for prefix in ("model.", "net."):
        if sd and all(k.startswith(prefix) for k in sd):
            return _rename_prefix(sd, prefix, "")
    return sd


@register_key_mapping("timm")
def timm_backbone(sd, model):
    """A bare timm model's weights (e.g. ImageNet) onto the timm module inside a musetag model."""
    sd = strip_wrappers(sd, model)
    target = model.state_dict()
    if sum(k in target for k in sd) > len(sd) / 2:  # already musetag names
        return sd
    prefix = _timm_prefix(model)
    if prefix is None:
        raise ModelError(
            "--init-map timm: the target model holds no timm module; use it with `timm:<name>` models or "
            "give a prefix mapping (prefix:OLD=NEW)"
        )
    return {prefix + k: v for k, v in sd.items()}


def _timm_prefix(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if name and type(module).__module__.startswith("timm."):
            # the outermost timm module: its children belong to it
            return name + "."
    return None


def _prefix_mapping(spec: str) -> KeyMap:
    pairs = []
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(f"--init-map prefix:{spec}: write each rename as OLD=NEW (NEW may be empty)")
        old, new = part.split("=", 1)
        pairs.append((old, new))

    def fn(sd, model):
        sd = strip_wrappers(sd, model)
        for old, new in pairs:
            sd = _rename_prefix(sd, old, new)
        return sd

    return fn


def get_key_mapping(spec: str | KeyMap | None) -> KeyMap:
    """Resolve a mapping given as a callable, a registered name, ``prefix:OLD=NEW`` or ``module:function``."""
    if spec is None or spec == "":
        return strip_wrappers
    if callable(spec):
        user = spec

        def chained(sd, model):
            return user(strip_wrappers(sd, model), model)

        return chained
    spec = str(spec)
    if spec in _KEY_MAPPINGS:
        return _KEY_MAPPINGS[spec][0]
    if spec.startswith("prefix:"):
        return _prefix_mapping(spec[len("prefix:"):])
    if ":" in spec:
        target, func_name = spec.rsplit(":", 1)
        try:
            if target.endswith(".py"):
                file = Path(target)
                if not file.is_file():
                    raise ConfigError(f"--init-map {spec}: {file} does not exist")
                module_spec = importlib.util.spec_from_file_location(f"musetag_user_map_{file.stem}", file)
                module = importlib.util.module_from_spec(module_spec)
                module_spec.loader.exec_module(module)  # type: ignore[union-attr]
            else:
                module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"--init-map {spec}: cannot import {target} ({exc})") from None
        fn = getattr(module, func_name, None)
        if not callable(fn):
            raise ConfigError(f"--init-map {spec}: {target} has no function {func_name!r}")
        return get_key_mapping(fn)
    raise ConfigError(
        f"unknown key mapping {spec!r}: use one of {', '.join(_KEY_MAPPINGS)}, prefix:OLD=NEW, "
        "or module:function / file.py:function"
    )
