"""musetag: recognise the emotions, themes and genres of music from its audio.

The public API is imported lazily so that ``import musetag`` stays cheap (no torch import until a
function that needs it is used).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> "module:attribute"
_PUBLIC = {
    "MusetagError": "musetag.errors:MusetagError",
    "AudioError": "musetag.errors:AudioError",
    "DatasetError": "musetag.errors:DatasetError",
    "ConfigError": "musetag.errors:ConfigError",
    "ModelError": "musetag.errors:ModelError",
    "load_audio": "musetag.audio:load_audio",
    "audio_info": "musetag.audio:audio_info",
    "stream_blocks": "musetag.audio:stream_blocks",
    "FeatureConfig": "musetag.features:FeatureConfig",
    "get_preset": "musetag.features:get_preset",
    "create_model": "musetag.models:create_model",
    "list_models": "musetag.models:list_models",
    "train": "musetag.training:train",
    "evaluate_predictions": "musetag.evaluate:evaluate",
    "Tagger": "musetag.inference:Tagger",
    "load_embedder": "musetag.inference:load_embedder",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'musetag' has no attribute {name!r}")
    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
