"""Key mappings: rename (and transform) a source's weights to a target model's parameter names.

A mapping is a callable ``fn(state_dict, model) -> state_dict``. The named ones (``--init-map NAME``)
are registered here with :func:`register_key_mapping`; :func:`get_key_mapping` also understands
``prefix:OLD=NEW`` and ``module:function`` specs. The strict renames of published upstream weights
(``mtg-baseline``, ``won2020``) live here too, with :func:`convert_upstream`. Used by
:mod:`musetag.training.transfer` (see its docstring for the user-facing description).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from musetag.errors import ConfigError, ModelError

log = logging.getLogger("musetag.training.transfer")


def _tensors_only(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
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


# ------------------------------------------------------------------------------ upstream formats
# Published weights of other projects, renamed key for key onto the zoo's exact re-implementations
# (see musetag.models.upstream). Strict: every key must be known and, with a target model, every
# target key present with the same shape; anything else is a ModelError naming the keys.

UPSTREAM_FORMATS = ("mtg-baseline", "won2020")
_BASELINE_BLOCK = {1: 0, 2: 2, 3: 4, 4: 6, 5: 8}  # conv_i -> vggish_baseline features.<index>


def _rename_mtg_baseline(key: str) -> str | None:
    head, _, rest = key.partition(".")
    if head == "bn_init":
        return f"input_bn.{rest}"
    if head == "dense":
        return f"classifier.{rest}"
    for prefix, sub in (("conv_", 0), ("bn_", 1)):
        if head.startswith(prefix) and head[len(prefix):].isdigit() and int(head[len(prefix):]) in _BASELINE_BLOCK:
            return f"features.{_BASELINE_BLOCK[int(head[len(prefix):])]}.{sub}.{rest}"
    return None


_WON_TOP = ("spec", "spec_bn", "layer1", "layer2", "layer3", "layer4", "layer5", "layers", "dense1", "bn")


def _rename_won2020(key: str) -> str | None:
    head, _, rest = key.partition(".")
    if head in ("dense", "dense2"):
        return f"classifier.{rest}"
    return key if head in _WON_TOP else None


_UPSTREAM_RENAMES = {"mtg-baseline": _rename_mtg_baseline, "won2020": _rename_won2020}


def upstream_model_spec(kind: str, state_dict: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """``(zoo model name, args)`` of the exact architecture behind an upstream state dict, read
    from its keys and shapes (``n_classes`` from the output layer; Musicnn's back-end and dense widths)."""
    if kind not in _UPSTREAM_RENAMES:
        raise ModelError(f"unknown upstream format {kind!r}; known: {', '.join(UPSTREAM_FORMATS)}")
    sd = dict(state_dict)
    if kind == "mtg-baseline":
        if "dense.weight" not in sd:
            raise ModelError("not an MTG-Jamendo baseline state dict: no 'dense.weight'")
        return "vggish_baseline", {"n_classes": int(sd["dense.weight"].shape[0]), "act": "elu"}
    if "layers.0.conv.weight" in sd:
        if "dense2.weight" not in sd or "layer1.conv.weight" not in sd or "dense1.weight" not in sd:
            raise ModelError("Musicnn state dict without dense2/layer1/dense1 weights; the file is incomplete")
        return "won_musicnn", {"n_classes": int(sd["dense2.weight"].shape[0]),
                               "backend": int(sd["layer1.conv.weight"].shape[0]),
                               "dense": int(sd["dense1.weight"].shape[0])}
    if "dense.weight" not in sd:
        raise ModelError("not a Won et al. 2020 fcn/crnn/musicnn state dict: no 'dense.weight' or 'dense2.weight'")
    name = "won_crnn" if "layer5.weight_ih_l0" in sd else "won_fcn"
    return name, {"n_classes": int(sd["dense.weight"].shape[0])}


def _check_strict(kind: str, mapped: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                  head: str | None = None) -> None:
    from musetag.models.pretrained import state_dict_mismatch

    mismatch = state_dict_mismatch(dict(mapped), dict(target), skip_shapes_under=head, show=50)
    if mismatch:
        raise ModelError(f"{kind} weights do not fit the model exactly: {mismatch}")


def convert_upstream(kind: str, state_dict: Mapping[str, Any], model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Upstream ``state_dict`` (``kind``: ``mtg-baseline`` or ``won2020``) renamed to musetag's keys.

    Strict: a key no rule knows, a missing key or a different shape raises :class:`ModelError`
    naming them. Without ``model`` the check is against the architecture
    :func:`upstream_model_spec` reads from the keys, so a downloaded file can be converted into
    a package without building anything first. With ``model`` (``--init-from FILE --init-map
    won2020``) the output layer may differ in size: transfer re-creates it for the new tags."""
    if kind not in _UPSTREAM_RENAMES:
        raise ModelError(f"unknown upstream format {kind!r}; known: {', '.join(UPSTREAM_FORMATS)}")
    rename = _UPSTREAM_RENAMES[kind]
    sd = strip_wrappers(_tensors_only(state_dict), None)
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        new = rename(key)
        if new is None:
            unknown.append(key)
        else:
            mapped[new] = value
    if unknown:
        raise ModelError(f"{kind} weights: unexpected key(s) {', '.join(unknown)}; is this the right format?")
    head = None
    if model is None:
        from musetag.models import create_model

        name, args = upstream_model_spec(kind, sd)
        model = create_model(name, **args)
    else:
        head = classifier_prefix(model)
    _check_strict(kind, mapped, model.state_dict(), head)
    return mapped


@register_key_mapping("mtg-baseline")
def mtg_baseline(sd, model):
    """MTG-Jamendo baseline (MTG/mtg-jamendo-dataset scripts/baseline CNN) onto vggish_baseline(act="elu"); strict."""
    return convert_upstream("mtg-baseline", sd, model)


@register_key_mapping("won2020")
def won2020(sd, model):
    """Won et al. 2020 sota-music-tagging-models fcn/musicnn/crnn onto won_fcn/won_musicnn/won_crnn; strict."""
    return convert_upstream("won2020", sd, model)
