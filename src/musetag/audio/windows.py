"""Chunks spread over a file (the ``evenly_spaced`` rule, e.g. musicnn's 16 windows of 3 s), each
decoded by a seek instead of decoding the whole file.

Where the chunks cover a small part of a song, decoding all of it is wasted work: musicnn scores 48 s
of a 4-minute song. :func:`evenly_spaced_chunks` finds the chunk positions from the length the file
announces (libsndfile's frame count: exact for WAV, FLAC and single-stream MP3) put through the
resampler's output count, then opens the file once and, per chunk, seeks a margin before it, decodes
the chunk and the margins, averages the channels, and resamples that piece alone (soxr, the same
quality as the whole-file path). The piece starts on an input sample that maps to a whole output
sample (a multiple of ``in_sr / gcd(in_sr, out_sr)``), so its resampled samples line up with the
whole file's.

Not bit-exact, bounded: libmpg123 after a seek and soxr on a piece round differently from the
whole-file decode (libmpg123's in-decoder channel mix) and resample; measured max |diff| 1.7e-6 on
the shared songs against the whole-file path's samples (tests/test_features_excerpt.py bounds it by
1e-5, and the scores of a model by 1e-4). Files where this does not apply (another decoder such as
``decoder="essentia"``, which cannot seek exactly; joined MP3 streams; chunks covering half the file
or more; stereo models) return ``None`` and are decoded whole.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

#: decoded before and after each chunk, so the decoder and the resampler settle (seconds)
MARGIN_SECONDS = 0.25
#: chunks covering more than this fraction of the file: decoding the whole file is as cheap
MAX_COVERAGE = 0.5
_SOXR = {"soxr_hq": "HQ", "soxr_vhq": "VHQ", "soxr_mq": "MQ", "soxr_lq": "LQ", "soxr_qq": "QQ"}


def soxr_output_count(n_in: int, in_sr: int, out_sr: int) -> int:
    """Samples ``soxr.resample`` returns for ``n_in`` input samples: ``floor(n_in * out / in + 1/2)``."""
    if in_sr == out_sr:
        return int(n_in)
    return (2 * int(n_in) * int(out_sr) + int(in_sr)) // (2 * int(in_sr))


def _exact_frames(path: Path, info) -> bool:
    """Whether libsndfile's frame count is what a whole-file decode returns."""
    fmt = str(info.format).upper()
    if fmt in ("WAV", "FLAC"):
        return True
    if fmt in ("MP3", "MPEG"):
        from musetag.audio.mp3parts import mp3_parts

        return len(mp3_parts(path)) == 1
    return False


def spread_chunks(
    source, length: int, place, *, sample_rate: int, mono: bool, resample_method: str, decoder: str
) -> tuple[np.ndarray, list[int], int] | None:
    """``((k, 1, length) chunks, starts, n)``: the chunks starting at ``place(n)`` (the segment
    rule's start samples for a signal of ``n`` samples, e.g. the ``evenly_spaced`` rule of
    :func:`musetag.inference.segments.audio_chunk_starts`) of the mono signal at ``sample_rate``, each
    decoded by a seek; ``None`` where that does not apply (see the module docstring)."""
    if decoder != "auto" or not mono or resample_method not in _SOXR or not isinstance(source, (str, os.PathLike)):
        return None
    from musetag.audio.sources import _decoder_messages, _note_said

    path = Path(source)
    said: list[str] = []  # what libsndfile / libmpg123 print while probing and seeking: kept off the terminal
    with _decoder_messages(said):
        got = _read_chunks(path, length, place, sample_rate, resample_method)
    if got is not None:
        _note_said(str(path), said)  # a file that decoded: its decoder's messages become warnings on its row
    return got  # None: the whole-file path decodes it again and reports what the decoder says


def _read_chunks(path: Path, length: int, place, sample_rate: int, resample_method: str):
    import soundfile as sf
    import soxr

    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError):
        return None
    in_sr, out_sr = int(info.samplerate), int(sample_rate)
    if not info.frames or not _exact_frames(path, info):
        return None
    n = soxr_output_count(info.frames, in_sr, out_sr)
    starts = [int(s) for s in place(n)]
    if n < length or len(starts) * length > MAX_COVERAGE * n:
        return None
    step = in_sr // math.gcd(in_sr, out_sr)  # input samples per whole number of output samples
    margin = int(math.ceil(MARGIN_SECONDS * in_sr / step)) * step
    chunks = []
    with sf.SoundFile(str(path)) as f:
        for s in starts:
            a = max(0, (s * in_sr // out_sr) // step * step - margin)
            b = min(info.frames, -(-(s + length) * in_sr // out_sr) + margin)
            f.seek(a)
            x = f.read(b - a, dtype="float32", always_2d=True)
            x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
            y = x if in_sr == out_sr else soxr.resample(x, in_sr, out_sr, quality=_SOXR[resample_method])
            j = s - a * out_sr // in_sr
            chunk = y[j : j + length]
            if chunk.shape[0] < length:
                return None  # shorter than announced: the whole-file path reports it
            chunks.append(chunk)
    return np.stack(chunks)[:, None, :].astype(np.float32, copy=False), starts, n


__all__ = ["MARGIN_SECONDS", "MAX_COVERAGE", "spread_chunks", "soxr_output_count"]
