"""The centred excerpt of a file, decoded no further than its end, equal sample for sample to the
same excerpt cut from the whole decoded and resampled file.

The MTG-Jamendo baseline (``segment.rule = "centre_excerpt"``) scores the centred 29.1 s of a song's
12 kHz signal: ``(n - length) // 2`` samples into it, ``n`` the length of the whole resampled
signal. Decoding with Essentia's FFmpeg fixed-point MP3 decoder (``decoder="essentia"``) cannot seek:
that decoder carries its rounding remainder from sample to sample through the whole stream, so
decoding from a seek point gives samples one LSB off about half the time, for good (measured on the
10 shared songs: the excerpt's features then differ from Essentia's by up to 2.4 dB, far past the
golden tolerance of 0.05 dB). What can be saved exactly is everything after the excerpt:

1. ``n`` comes from the length the header announces (a single-stream MP3 with a Xing/Info/VBRI
   frame, FLAC STREAMINFO, WAV data size), put through the same streaming linear converter
   (libsamplerate ``SRC_LINEAR`` at Essentia's ratio) fed that many zeros: the converter's output
   count depends on the input length only;
2. the file is decoded from its start up to the excerpt's last input sample, in blocks, through
   that converter; the excerpt is the slice ``[start, start + length)`` of its output, identical
   to slicing the whole resampled file (the streaming converter joins chunks without a seam);
3. before that, the whole file is demuxed (no decoding, a few ms per song) and its packets' length
   must agree with the announced one (to two MP3 frames and the encoder delay): a truncated file, or
   one whose header understates it (MP3 frames appended after the header was written), goes to the
   whole-file path, which decodes everything and reports a truncation.

:func:`centre_excerpt` returns ``None`` where this does not apply (another decoder or resampler, a
file whose length is not announced exactly, a file shorter than the excerpt) and the caller decodes
the whole file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

_ZEROS = 1 << 20  # zeros fed per call when counting the converter's output


def linear_output_count(n_in: int, in_sr: int, out_sr: int) -> int:
    """Samples :func:`musetag.audio.ops.resample` (``method="linear"``) returns for ``n_in`` input
    samples: the streaming converter is fed ``n_in`` zeros (its output count does not depend on the
    values), about 2 ms per minute of 44.1 kHz audio."""
    from musetag.audio.ops import LinearResampler

    if int(in_sr) == int(out_sr):
        return int(n_in)
    resampler = LinearResampler(in_sr, out_sr, 1)
    zeros = np.zeros(min(_ZEROS, max(1, n_in)), np.float32)
    count, left = 0, int(n_in)
    while left > 0:
        take = min(left, zeros.size)
        left -= take
        count += resampler.process(zeros[:take], last=left == 0).shape[-1]
    return count


def _announced_exactly(reader, source) -> int | None:
    """Input samples the header announces, where FFmpeg's figure is exact: MP3 with one Xing/Info/
    VBRI frame (joined MP3 streams announce only their first part), FLAC and WAV; else None."""
    total = reader.announced
    if not total:
        return None
    fmt = reader.container.format.name
    if fmt == "mp3":
        from musetag.audio.mp3parts import file_layout

        if not isinstance(source, Path):
            return None
        return total if len(file_layout(source)[0]) == 1 else None
    return total if fmt in ("flac", "wav") else None


def centre_excerpt(source, name: str, length: int, sample_rate: int, resample_method: str) -> tuple[np.ndarray, int] | None:
    """``(excerpt, n)``: the ``length`` mono samples at ``sample_rate`` starting ``(n - length) // 2``
    into the whole decoded (``decoder="essentia"``), channel-averaged and resampled file of ``n``
    samples, decoding only up to the excerpt's end; ``None`` where that cannot be exact (see the
    module docstring). ``source``: what :func:`musetag.audio.sources._normalise_source` returns."""
    from musetag.audio import ffmpeg_decode
    from musetag.audio.ops import stream_resampler

    if not ffmpeg_decode.available(warn=False):
        return None
    with ffmpeg_decode._open(source, name) as reader:
        in_sr = reader.rate
        total_in = _announced_exactly(reader, source)
        if not in_sr or not total_in or not _demuxed_length_agrees(reader, total_in):
            return None
    with ffmpeg_decode._open(source, name) as reader:  # decoded from the start, as a fresh open does
        out_sr = int(sample_rate)
        if out_sr != in_sr and resample_method != "linear":
            return None  # soxr's block processing does not promise a seamless exact join
        n = linear_output_count(total_in, in_sr, out_sr)
        if n < length:
            return None
        start = (n - length) // 2
        stop = start + length
        # the linear converter's output k interpolates input samples floor(k / ratio) and the next
        limit = int(np.ceil((stop + 1) * in_sr / out_sr)) + 64
        resampler = stream_resampler(in_sr, out_sr, 1, resample_method)
        got, pos, decoded = [], 0, 0
        for raw in reader.blocks(1 << 18, mono=True, limit=limit):
            decoded += raw.shape[0]
            chunk = np.ascontiguousarray(raw.T)
            out = chunk if resampler is None else resampler.process(chunk, last=False)
            a, b = max(start - pos, 0), min(stop - pos, out.shape[1])
            if b > a:
                got.append(out[:, a:b])
            pos += out.shape[1]
            if pos >= stop:
                break
        if pos < stop:
            return None  # shorter than announced: the whole-file path reports it
        return np.concatenate(got, axis=1), n


#: samples the demuxed packets may exceed or fall short of the announced length: two MP3 frames
#: plus the encoder delay and padding the decoder trims
_LENGTH_SLACK = 2 * 1152 + 2 * 1105


def _demuxed_length_agrees(reader, total_in: int) -> bool:
    """Whether the stream's packets (demuxed, not decoded) last as long as the header announces."""
    tb = reader.stream.time_base
    if not tb:
        return False
    ticks = 0
    for packet in reader.container.demux(reader.stream):
        if packet.size:
            if not packet.duration:
                return False
            ticks += int(packet.duration)
    return abs(int(round(float(ticks * tb) * reader.rate)) - total_in) <= _LENGTH_SLACK





def load_centre_excerpt(
    source, length: int, *, sample_rate: int, mono: bool, resample_method: str, decoder: str
) -> tuple[np.ndarray, int] | None:
    """:func:`centre_excerpt` for what :func:`musetag.audio.load_audio` takes (a path, bytes or a
    binary file object) and a feature config's settings: ``((1, length) excerpt, n)``, or ``None``
    where the exact partial decode does not apply (not ``decoder="essentia"``, not mono, PyAV
    missing, length not announced exactly, ...) and the whole file must be decoded."""
    from musetag.audio.sources import _normalise_source

    if decoder != "essentia" or not mono or not length:
        return None
    src, name = _normalise_source(source)
    return centre_excerpt(src, name, int(length), int(sample_rate), resample_method)
__all__ = ["centre_excerpt", "linear_output_count", "load_centre_excerpt"]
