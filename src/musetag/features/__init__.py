"""Feature front ends: settings (:class:`FeatureConfig` and the seeds' presets), the torch module
that computes them (:class:`FeatureExtractor`) and numpy/file helpers.

Training-only augmentation lives in :mod:`musetag.features.augment` and is not imported here.
"""
from musetag.features.extract import (
    AUDIO_EXTENSIONS,
    ExtractionReport,
    extract_file,
    extract_to_directory,
    find_audio_files,
    iter_extract,
)
from musetag.features.frontend import (
    JAMENDO_EXCERPT_SAMPLES,
    FeatureExtractor,
    analysis_window,
    compute_features,
    compute_stats,
    essentia_mel_filterbank,
    get_extractor,
    jamendo_excerpt_features,
    mel_filterbank,
    normalize,
    prepare_audio,
)
from musetag.features.presets import PRESETS, FeatureConfig, get_preset, list_presets

__all__ = [
    "AUDIO_EXTENSIONS",
    "ExtractionReport",
    "FeatureConfig",
    "FeatureExtractor",
    "JAMENDO_EXCERPT_SAMPLES",
    "PRESETS",
    "analysis_window",
    "compute_features",
    "compute_stats",
    "essentia_mel_filterbank",
    "extract_file",
    "extract_to_directory",
    "find_audio_files",
    "get_extractor",
    "get_preset",
    "iter_extract",
    "jamendo_excerpt_features",
    "list_presets",
    "mel_filterbank",
    "normalize",
    "prepare_audio",
]
