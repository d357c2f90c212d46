"""Decoding exactly as Essentia's ``AudioLoader`` / ``MonoLoader`` do: FFmpeg through PyAV (``av``).

The official MTG-Jamendo mel-spectrograms were computed by Essentia 2.1b6, whose ``AudioLoader``
decodes with FFmpeg and converts every decoded frame to interleaved single-precision float
(libavresample, no clipping, no dither); ``MonoLoader`` then averages the two channels
(``(left + right) * 0.5`` in float32; a mono file gives its one channel). What makes the difference
for MP3 is the decoder: the FFmpeg build inside Essentia picks the **fixed-point** ``mp3`` decoder,
whose output is 16-bit (``s16p``, clipped at full scale), while a current FFmpeg would pick
``mp3float`` and libmpg123 / libsndfile decode to float (values past full scale kept, no 16-bit
quantisation). Those differ by up to ~4 dB in the quietest mel bins and near clipped peaks.

This module reproduces it, measured sample for sample against ``essentia.standard.AudioLoader``
(Essentia 2.1b6 from PyPI):

* MP3 (``mp3float``, ``mp3adufloat``, ``mp3on4float`` are swapped for their fixed-point twins):
  ``int16 / 32768``; identical on the 10 shared Jamendo songs (stereo 44.1 kHz) and on mono
  22.05 kHz MP3s, lengths included (the encoder delay and padding are removed the same way).
* 16-bit WAV / FLAC: ``int16 / 32768``; 24-bit WAV / FLAC: FFmpeg decodes to ``s32``, converted
  ``int32 * 2**-31``; float WAV: copied (values past full scale kept, as Essentia does). Identical.
* OGG Vorbis: float output; within 2.4e-7 of Essentia (its older FFmpeg rounds differently in the
  float inverse MDCT), and a file may end a few samples longer in Essentia.
* Files with more than two channels (which Essentia refuses) are averaged over all channels.

Frames FFmpeg cannot decode are skipped, as Essentia does; a file of which no frame decodes, with no
audio stream, or whose decoded length falls well short of the length its header announces
raises :class:`~musetag.errors.AudioError` naming the file and the fix.

Whole files (:func:`decode`) and blocks (:func:`stream_blocks`, bounded memory for files of any
length) come from the same frames, so blocks join exactly to the whole-file result (with the
``"linear"`` resampler, which streams without a seam). When PyAV is not installed,
:func:`available` warns once and the caller decodes as usual (``load_audio`` / ``stream_blocks``
in :mod:`musetag.audio.io` dispatch here for ``decoder="essentia"``).
"""
from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from musetag.audio.sources import (
    _TRUNCATION_TOLERANCE_FRAC,
    _TRUNCATION_TOLERANCE_S,
    _downmix_frames,
    _explain_open_failure,
    _note,
)
from musetag.errors import AudioError, ConfigError

log = logging.getLogger(__name__)

#: the values of ``FeatureConfig.decoder`` / ``decoder=`` of ``load_audio`` and ``stream_blocks``
DECODERS = ("auto", "essentia")

# FFmpeg's floating-point MPEG audio decoders -> the fixed-point ones Essentia's FFmpeg uses
_FIXED_POINT = {"mp3float": "mp3", "mp3adufloat": "mp3adu", "mp3on4float": "mp3on4"}

_lock = threading.Lock()
_av = None
_tried = False
_warned = False

FALLBACK_WARNING = (
    "decoder='essentia' (the jamendo96 preset) needs PyAV (the 'av' package, FFmpeg's decoders) to decode "
    "audio exactly as Essentia does for the official MTG-Jamendo mel-spectrograms; it is not installed, so "
    "libmpg123/libsndfile decode instead and MP3 features differ from the official ones by up to a few dB in "
    "quiet bins and near clipped peaks. Fix: pip install av"
)


def check_decoder(decoder: str, where: str = "decoder") -> str:
    """``decoder`` if it is one of :data:`DECODERS`, else a :class:`ConfigError`."""
    if decoder not in DECODERS:
        raise ConfigError(f"{where} must be one of {DECODERS}, got {decoder!r}")
    return decoder


def _import_av():
    global _av, _tried
    with _lock:
        if not _tried:
            _tried = True
            try:
                import av  # noqa: PLC0415

                _av = av
            except ImportError:
                _av = None
        return _av


def available(*, warn: bool = True) -> bool:
    """Whether PyAV can be imported; the first time it cannot, one warning says what that costs
    (features that differ from Essentia's) and the fix (``pip install av``)."""
    global _warned
    if _import_av() is not None:
        return True
    if warn and not _warned:
        _warned = True
        log.warning(FALLBACK_WARNING)
        warnings.warn(FALLBACK_WARNING, RuntimeWarning, stacklevel=3)
    return False


# ------------------------------------------------------------------------------------- decoding
def _to_float(frame, channels: int) -> np.ndarray:
    """One decoded frame as ``(samples, channels)`` float32, converted as libavresample does for
    Essentia (``s16 * 2**-15``, ``s32 * 2**-31``, ``(u8 - 128) * 2**-7``, float copied)."""
    arr = frame.to_ndarray()
    if frame.format.is_planar:
        arr = arr.T
    else:
        arr = arr.reshape(-1, channels)
    if arr.dtype == np.int16:
        out = arr.astype(np.float32) * np.float32(1.0 / 32768)
    elif arr.dtype == np.int32:
        out = arr.astype(np.float32) * np.float32(2.0**-31)
    elif arr.dtype == np.uint8:
        out = (arr.astype(np.float32) - np.float32(128)) * np.float32(1.0 / 128)
    elif arr.dtype == np.int64:
        out = (arr.astype(np.float64) * 2.0**-63).astype(np.float32)
    else:
        out = arr.astype(np.float32, copy=False)
    return out


class _Reader:
    """An open file: its audio stream, the decoder Essentia would use, and decoded chunks."""

    def __init__(self, source, name: str) -> None:

        av = _import_av()
        self.name = name
        self._source = source
        if not isinstance(source, Path):
            source.seek(0)
        try:
            self.container = av.open(str(source) if isinstance(source, Path) else source, mode="r")
        except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
            if not isinstance(source, Path):
                source.seek(0)
            raise _explain_open_failure(source, name, exc) from exc
        try:
            streams = self.container.streams.audio
            if not streams:
                raise AudioError(
                    f"{name}: the file holds no audio stream (a video or image without sound?); "
                    "pass a file with audio (WAV, FLAC, MP3, OGG)"
                )
            self.stream = streams[0]
            stream_ctx = self.stream.codec_context
            codec = _FIXED_POINT.get(stream_ctx.name, stream_ctx.name)
            if codec != stream_ctx.name:
                ctx = av.codec.CodecContext.create(codec, "r")
                if stream_ctx.extradata:
                    ctx.extradata = stream_ctx.extradata
                self.codec = ctx
            else:
                self.codec = stream_ctx
            self.codec_name = codec
            self.rate = int(self.stream.rate or 0)
            self.channels = int(stream_ctx.channels or 0)
            # samples announced by the header (Xing/LAME frame count, FLAC STREAMINFO, WAV data size),
            # or None where the container only estimates it
            self.announced = None
            if self.stream.duration is not None and self.stream.time_base and self.rate:
                self.announced = int(round(float(self.stream.duration * self.stream.time_base) * self.rate))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing after an error
            pass

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def chunks(self) -> Iterator[np.ndarray]:
        """Decoded ``(samples, channels)`` float32 chunks, one per FFmpeg frame, in order. Frames
        FFmpeg rejects are skipped (Essentia: "invalid frame, skipping it"); a read error ends the
        file (Essentia stops there too)."""
        av = _import_av()
        packets = self.container.demux(self.stream)
        skipped = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                log.debug("%s: read error, decoding stops here (%s)", self.name, exc)
                packet = None  # flush what the decoder holds
            try:
                frames = self.codec.decode(packet)
            except av.error.EOFError:
                frames = []
            except av.error.FFmpegError as exc:
                skipped += 1
                log.debug("%s: invalid frame skipped (%s)", self.name, exc)
                frames = []
            for frame in frames:
                channels = frame.layout.nb_channels
                if not self.channels:
                    self.channels = channels
                if not self.rate:
                    self.rate = int(frame.sample_rate)
                if channels != self.channels or int(frame.sample_rate) != self.rate:
                    raise AudioError(
                        f"{self.name}: the audio changes from {self.channels} channel(s) at {self.rate} Hz to "
                        f"{channels} at {frame.sample_rate} Hz part-way; re-encode it with one format throughout"
                    )
                if frame.samples:
                    yield _to_float(frame, channels)
            if packet is None:
                break
        if skipped:

            # a decoder warning on the file's row, as libmpg123's own messages are
            _note(self.name, f"decoder said: FFmpeg skipped {skipped} undecodable frame(s)")

    def check_length(self, decoded: int, start: int = 0) -> None:
        """:class:`AudioError` when nothing decoded, or far less than the header announces."""

        if decoded == 0 and start == 0:
            if not isinstance(self._source, Path):
                self._source.seek(0)
            raise _explain_open_failure(self._source, self.name, RuntimeError("no decodable audio frame"))
        total = self.announced
        if total and self.rate:
            expected = total - start
            if expected - decoded > max(_TRUNCATION_TOLERANCE_S * self.rate, _TRUNCATION_TOLERANCE_FRAC * expected):
                raise AudioError(
                    f"{self.name}: the file is truncated: its header announces {total / self.rate:.1f} s but the "
                    f"audio data ends after {(start + decoded) / self.rate:.1f} s; re-download or re-encode the file"
                )


def _open(source, name: str) -> _Reader:
    return _Reader(source, name)


def decode(source, name: str, *, offset: float = 0.0, duration: float | None = None) -> tuple[np.ndarray, int]:
    """The whole file (or ``offset``/``duration`` seconds of it) as ``(samples, channels)`` float32,
    and its rate. ``source``: a :class:`~pathlib.Path` or a seekable binary file object (what
    :func:`musetag.audio.sources._normalise_source` returns). The file is decoded from its start (as
    Essentia does; seeking in an MP3 would change the first samples) and decoding stops once the
    requested span is complete."""
    with _open(source, name) as reader:
        parts: list[np.ndarray] = []
        pos = 0  # samples decoded so far
        start = stop = None
        for chunk in reader.chunks():
            if start is None:
                start = int(round(offset * reader.rate))
                stop = None if duration is None else start + max(1, int(round(duration * reader.rate)))
            n = chunk.shape[0]
            lo, hi = max(start - pos, 0), n if stop is None else min(n, stop - pos)
            if hi > lo:
                parts.append(chunk[lo:hi])
            pos += n
            if stop is not None and pos >= stop:
                break
        if start is None:
            reader.check_length(0)
        if start > 0 and pos <= start:
            raise AudioError(
                f"{name}: offset {offset:.2f} s is past the end of the audio ({pos / reader.rate:.2f} s); "
                "use a smaller offset"
            )
        if stop is None:
            reader.check_length(pos - start, start)
        channels = reader.channels
        data = np.concatenate(parts, axis=0) if parts else np.zeros((0, channels), np.float32)
        return np.ascontiguousarray(data, dtype=np.float32), reader.rate


def stream_blocks(
    source,
    name: str,
    block_seconds: float,
    sample_rate: int | None,
    mono: bool,
    overlap_seconds: float,
    resample_method: str,
) -> Iterator[np.ndarray]:
    """Blocks as :func:`musetag.audio.io.stream_blocks` yields them, decoded frame by frame (memory
    bounded by a few blocks). With ``resample_method="linear"`` (libsamplerate's streaming
    converter) or no resampling, the blocks join to exactly the samples of :func:`decode` followed
    by the channel average and :func:`musetag.audio.ops.resample`."""
    from musetag.audio.ops import stream_resampler

    with _open(source, name) as reader:
        chunks = reader.chunks()
        first = next(chunks, None)
        if first is None:
            reader.check_length(0)
        in_sr = reader.rate
        out_sr = int(sample_rate) if sample_rate else in_sr
        channels = 1 if mono else reader.channels
        block = max(1, int(round(block_seconds * out_sr)))
        step = max(1, block - int(round(overlap_seconds * out_sr)))
        resampler = stream_resampler(in_sr, out_sr, channels, resample_method)
        read_frames = max(4096, int(block * in_sr / out_sr))
        buf = np.zeros((channels, 0), dtype=np.float32)
        emitted_any = False
        decoded = 0

        def gathered() -> Iterator[tuple[np.ndarray, bool]]:
            """Decoded chunks joined to at least ``read_frames`` samples; ``(raw, last)``."""
            nonlocal decoded
            pending, size = [first], first.shape[0]
            for chunk in chunks:
                if size >= read_frames:
                    yield np.concatenate(pending, axis=0), False
                    pending, size = [], 0
                pending.append(chunk)
                size += chunk.shape[0]
                decoded += chunk.shape[0]
            yield (np.concatenate(pending, axis=0) if pending else np.zeros((0, reader.channels), np.float32)), True

        decoded = first.shape[0]
        for raw, last in gathered():
            if last:
                reader.check_length(decoded)  # a truncated file fails as load_audio does
            chunk = _downmix_frames(raw)[None, :] if mono else np.ascontiguousarray(raw.T)
            out = chunk if resampler is None else resampler.process(chunk, last=last)
            if out.shape[1]:
                buf = np.concatenate([buf, out.astype(np.float32, copy=False)], axis=1)
            while buf.shape[1] >= block:
                yield np.ascontiguousarray(buf[0, :block] if mono else buf[:, :block])
                emitted_any = True
                buf = buf[:, step:].copy()
        if buf.shape[1] > (block - step if emitted_any else 0):
            yield np.ascontiguousarray(buf[0] if mono else buf)
        elif not emitted_any:
            raise AudioError(f"{name}: no audio samples decoded (the file holds no audio frames)")


__all__ = ["DECODERS", "FALLBACK_WARNING", "available", "check_decoder", "decode", "stream_blocks"]
