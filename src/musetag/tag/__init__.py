"""Many files at once: batch tagging, result writers, shards, Ray, similarity, packages from training runs.

One file with one model is :mod:`musetag.inference` (the Tagger, packages).

Imports are lazy so ``import musetag.tag`` does not load torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "create_package": "musetag.tag.package_from_run:create_package",
    "tag_files": "musetag.tag.batch:tag_files",
    "collect_audio_files": "musetag.tag.batch:collect_audio_files",
    "read_results": "musetag.tag.writers:read_results",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'musetag.tag' has no attribute {name!r}")
    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
