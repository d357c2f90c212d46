"""Published weights of other projects, renamed key for key onto the zoo's exact re-implementations.

The catalogue entries of :mod:`musetag.inference.upstream` and ``--init-map mtg-baseline`` / ``won2020``
use these. Strict: every key must be known and, with a target model, every target key present with the
same shape; anything else is a :class:`~musetag.errors.ModelError` naming the keys.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from musetag.errors import ModelError
from musetag.models.weights.fit import state_dict_mismatch
from musetag.models.weights.key_maps import classifier_prefix, register_key_mapping, strip_wrappers, tensors_only

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
    sd = strip_wrappers(tensors_only(state_dict), None)
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
