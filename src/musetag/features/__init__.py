"""Feature front ends: settings (:class:`FeatureConfig` and the seeds' presets), the torch module
that computes them (:class:`FeatureExtractor`) and numpy/file helpers.

Training-only augmentation lives in :mod:`musetag.features.augment` and is not imported here.

Names are imported lazily (PEP 562): ``from musetag.features import get_preset`` loads only the
settings module, so commands that need no network (``musetag score``, ``--help``) never import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_LAZY = {
    **dict.fromkeys(
        ("AUDIO_EXTENSIONS", "ExtractionReport", "extract_file", "extract_to_directory", "find_audio_files",
         "iter_extract"), "extract"),
    **dict.fromkeys(
        ("JAMENDO_EXCERPT_SAMPLES", "compute_features", "compute_stats", "jamendo_excerpt_features",
         "normalize"), "compute"),
    **dict.fromkeys(("FeatureExtractor",), "frontend"),
    **dict.fromkeys(("analysis_window", "essentia_mel_filterbank", "mel_filterbank"), "filters"),
    **dict.fromkeys(("prepare_audio",), "prepare"),
    **dict.fromkeys(("PRESETS", "FeatureConfig", "get_preset", "list_presets"), "presets"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'musetag.features' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"musetag.features.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
