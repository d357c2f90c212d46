"""The inference layer: one model on one piece of audio.

The package format (:mod:`.package`: a folder or archive, read without resolving names),
the pretrained catalogue that writes packages (:mod:`.hub`, :mod:`.upstream`), the front end that
turns audio into a model's windows (:mod:`.frontend`, :mod:`.segments`), the runners (torch, ONNX:
:mod:`.runners`), and the Tagger and Embedder composed from a runner, an aggregation and a head
(:mod:`.tagger`, :mod:`.embed`, probe heads in :mod:`.probe_tagging` / :mod:`.embed_scores`).
Names resolve only in :func:`load_model` (``musetag.inference.loading``).

Imports are lazy so ``import musetag.inference`` does not load torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "Tagger": "musetag.inference.tagger:Tagger",
    "TagResult": "musetag.inference.result:TagResult",
    "ModelPackage": "musetag.inference.package:ModelPackage",
    "load_package": "musetag.inference.package:load_package",
    "save_package": "musetag.inference.package:save_package",
    "load_embedder": "musetag.inference.embed:load_embedder",
    "load_model": "musetag.inference.loading:load_model",
    "export_model": "musetag.inference.export:export_model",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'musetag.inference' has no attribute {name!r}")
    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
