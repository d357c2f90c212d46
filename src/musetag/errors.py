"""One root error and a few children. Every message names the file (or setting) and the fix."""
from __future__ import annotations


class MusetagError(Exception):
    """Root of every error musetag raises on purpose (bad input, bad configuration)."""


class AudioError(MusetagError):
    """An audio file (or upload) could not be decoded."""


class DatasetError(MusetagError):
    """A dataset, manifest or feature cache is missing, malformed or inconsistent."""


class ConfigError(MusetagError):
    """A recipe, dataset config or command-line setting is unknown or invalid."""


class ModelError(MusetagError):
    """A model name, checkpoint or model package is unknown, corrupt or incompatible."""


class EvaluationError(MusetagError):
    """Predictions and ground truth cannot be scored together (shape, dtype, NaN...)."""


def shortlist(texts, most: int = 10) -> str:
    """``texts`` joined for a message, at most ``most`` of them (a request or a data set may hold thousands)."""
    texts = [str(t) for t in texts]
    return ", ".join(texts[:most]) + (f", ... ({len(texts)} in all)" if len(texts) > most else "")
