"""Audio decoding and array operations: the first stage of musetag's flow.

``load_audio`` / ``audio_info`` / ``stream_blocks`` decode paths, bytes and file objects
(:mod:`musetag.audio.io`); ``resample`` / ``to_mono`` / ``crop`` / ``chunks`` work on arrays
(:mod:`musetag.audio.ops`).
"""
from musetag.audio.io import AudioInfo, AudioSource, audio_info, describe_source, load_audio, stream_blocks
from musetag.audio.ops import RESAMPLE_METHODS, chunks, crop, pad_or_crop, resample, to_mono, trim_silence

__all__ = [
    "AudioInfo",
    "AudioSource",
    "RESAMPLE_METHODS",
    "audio_info",
    "chunks",
    "crop",
    "describe_source",
    "load_audio",
    "pad_or_crop",
    "resample",
    "stream_blocks",
    "to_mono",
    "trim_silence",
]
