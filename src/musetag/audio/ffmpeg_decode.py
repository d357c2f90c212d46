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
# sample formats -> (numpy dtype, scale to float32) as libavresample converted them for Essentia
_FORMATS = {
    "s16": (np.int16, 2.0**-15),
    "s32": (np.int32, 2.0**-31),
    "u8": (np.uint8, 2.0**-7),
    "s64": (np.int64, 2.0**-63),
    "flt": (np.float32, None),
    "dbl": (np.float64, None),
}


def _convert(raw: list[bytes], fmt: str, channels: int, planar: bool, mono: bool) -> np.ndarray:
    """Raw decoded samples (one bytes string per channel when ``planar``, else one interleaved) ->
    ``(samples, channels)`` float32 (``(samples, 1)`` with ``mono``), converted as libavresample
    does for Essentia (``s16 * 2**-15``, ``s32 * 2**-31``, ``(u8 - 128) * 2**-7``, float copied),
    channels averaged as :func:`musetag.audio.sources._downmix_frames` does. One numpy pass per
    block, however many FFmpeg frames it holds."""
    dtype, scale = _FORMATS[fmt]
    if planar:
        cols = [np.frombuffer(b, dtype=dtype) for b in raw]
    else:
        inter = np.frombuffer(raw[0], dtype=dtype).reshape(-1, channels)
        cols = [inter[:, c] for c in range(channels)]
    if mono and channels == 2 and dtype == np.int16:
        # (l * 2**-15 + r * 2**-15) * 0.5 in float32 is exact and equals (l + r) * 2**-16
        out = cols[0].astype(np.int32)
        out += cols[1]
        return (out.astype(np.float32) * np.float32(2.0**-16))[:, None]
    floats = []
    for col in cols:
        if dtype == np.uint8:
            col = (col.astype(np.float32) - np.float32(128)) * np.float32(scale)
        elif dtype == np.int64:
            col = (col.astype(np.float64) * scale).astype(np.float32)
        elif scale is not None:
            col = col.astype(np.float32) * np.float32(scale)
        floats.append(col.astype(np.float32, copy=False))
    if mono and channels > 1:
        out = floats[0].copy()
        for col in floats[1:]:
            out += col
        out *= np.float32(1.0 / channels)
        return out[:, None]
    return np.ascontiguousarray(np.stack(floats, axis=1))


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
            if self.stream.duration is not None and self.stream.time_base and self.rate and not self._joined_mp3():
                self.announced = int(round(float(self.stream.duration * self.stream.time_base) * self.rate))
        except BaseException:
            self.close()
            raise

    def _joined_mp3(self) -> bool:
        """Several MP3 streams joined end to end (:mod:`musetag.audio.mp3parts`): FFmpeg decodes them
        all, but its duration is then a bitrate estimate (measured 14 % over on 10 joined songs), not
        a length to check the decoded audio against."""
        if self.container.format.name != "mp3":
            return False
        from musetag.audio.mp3parts import mp3_parts

        return len(mp3_parts(self._source)) > 1  # restores a file object's position

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing after an error
            pass

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frames(self) -> Iterator:
        """Decoded FFmpeg frames (non-empty), in order. Frames FFmpeg rejects are skipped (Essentia:
        "invalid frame, skipping it"); a read error ends the file (Essentia stops there too)."""
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
                if frame.samples:
                    yield frame
            if packet is None:
                break
        if skipped:
            # a decoder warning on the file's row, as libmpg123's own messages are
            _note(self.name, f"decoder said: FFmpeg skipped {skipped} undecodable frame(s)")

    def blocks(self, min_samples: int, *, mono: bool = False, limit: int | None = None) -> Iterator[np.ndarray]:
        """Decoded ``(samples, channels)`` float32 blocks (``(samples, 1)`` with ``mono``) of at
        least ``min_samples`` samples (the last may be shorter), in order. The frames' raw samples
        are viewed per frame and copied once per block; conversion and channel mixing run once per
        block (no per-frame numpy work). Decoding stops once ``limit`` samples are decoded (the block
        holding sample ``limit`` is whole)."""
        raw: list[list[memoryview]] = []
        size = total = 0
        layout = None  # (format name, planar, bytes per sample, channels) of the frames in ``raw``
        fmt_name = None
        for frame in self.frames():
            name = frame.format.name
            if name != fmt_name or size >= min_samples:
                if size:
                    yield _convert([b"".join(r) for r in raw], layout[0], layout[3], layout[1], mono)
                    size = 0
                fmt, fmt_name = frame.format, name
                layout = (name.rstrip("p") if fmt.is_planar else name, fmt.is_planar, fmt.bytes, self._check(frame))
                raw = [[] for _ in range(layout[3] if fmt.is_planar else 1)]
                width_per_sample = fmt.bytes * (1 if fmt.is_planar else layout[3])
            elif frame.sample_rate != self.rate or frame.layout.nb_channels != layout[3]:
                self._check(frame)
            n = frame.samples
            width = n * width_per_sample
            planes = frame.planes
            for c, plane_raw in enumerate(raw):
                # a view keeps the frame's (reference-counted) buffer alive until the block is joined:
                # one copy per sample instead of two
                plane_raw.append(memoryview(planes[c])[:width])
            size += n
            total += n
            if limit is not None and total >= limit:
                break
        if size:
            yield _convert([b"".join(r) for r in raw], layout[0], layout[3], layout[1], mono)

    def _check(self, frame) -> int:
        """The frame's channel count, after checking that rate and channels stay those of the file."""
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
        return channels
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


#: samples per converted block when a whole file is decoded (about 6 s at 44.1 kHz)
_DECODE_BLOCK = 1 << 18


def decode(
    source, name: str, *, offset: float = 0.0, duration: float | None = None, mono: bool = False
) -> tuple[np.ndarray, int]:
    """The whole file (or ``offset``/``duration`` seconds of it) as ``(samples, channels)`` float32
    (``(samples, 1)``, the channel average, with ``mono``), and its rate. ``source``: a
    :class:`~pathlib.Path` or a seekable binary file object (what
    :func:`musetag.audio.sources._normalise_source` returns). The file is decoded from its start (as
    Essentia does: FFmpeg's fixed-point MP3 decoder carries its rounding remainder from sample to
    sample through the whole stream, so a seek changes every later sample by up to one LSB) and
    decoding stops once the requested span is complete."""
    with _open(source, name) as reader:
        parts: list[np.ndarray] = []
        pos = 0  # samples decoded so far
        start = stop = None
        if reader.rate:
            start = int(round(offset * reader.rate))
            stop = None if duration is None else start + max(1, int(round(duration * reader.rate)))
        for block in reader.blocks(_DECODE_BLOCK, mono=mono, limit=stop):
            if start is None:  # the container did not say its rate: the first frame did
                start = int(round(offset * reader.rate))
                stop = None if duration is None else start + max(1, int(round(duration * reader.rate)))
            n = block.shape[0]
            lo, hi = max(start - pos, 0), n if stop is None else min(n, stop - pos)
            if hi > lo:
                parts.append(block[lo:hi])
            pos += n
            if stop is not None and pos >= stop:
                break
        if pos == 0:
            reader.check_length(0)
        if start > 0 and pos <= start:
            raise AudioError(
                f"{name}: offset {offset:.2f} s is past the end of the audio ({pos / reader.rate:.2f} s); "
                "use a smaller offset"
            )
        if stop is None:
            reader.check_length(pos - start, start)
        channels = 1 if mono else reader.channels
        if len(parts) == 1:
            return parts[0], reader.rate
        data = np.concatenate(parts, axis=0) if parts else np.zeros((0, channels), np.float32)
        return data, reader.rate


def stream_blocks(
    source,
    name: str,
    block_seconds: float,
    sample_rate: int | None,
    mono: bool,
    overlap_seconds: float,
    resample_method: str,
) -> Iterator[np.ndarray]:
    """Blocks as :func:`musetag.audio.io.stream_blocks` yields them, decoded in blocks of about
    ``block_seconds`` (memory bounded by a few blocks). With ``resample_method="linear"``
    (libsamplerate's streaming converter) or no resampling, the blocks join to exactly the samples
    of :func:`decode` followed by the channel average and :func:`musetag.audio.ops.resample`."""
    from musetag.audio.ops import stream_resampler

    with _open(source, name) as reader:
        rate = reader.rate or 44100  # only sizes the decoded blocks
        out_rate = int(sample_rate) if sample_rate else rate
        read_frames = max(4096, int(round(block_seconds * out_rate)) * rate // out_rate)
        raws = reader.blocks(read_frames, mono=mono)
        first = next(raws, None)
        if first is None:
            reader.check_length(0)
        in_sr = reader.rate
        out_sr = int(sample_rate) if sample_rate else in_sr
        channels = 1 if mono else reader.channels
        block = max(1, int(round(block_seconds * out_sr)))
        step = max(1, block - int(round(overlap_seconds * out_sr)))
        resampler = stream_resampler(in_sr, out_sr, channels, resample_method)
        buf = np.zeros((channels, 0), dtype=np.float32)
        emitted_any = False
        decoded = 0
        raw = first
        while raw is not None:
            following = next(raws, None)
            last = following is None
            decoded += raw.shape[0]
            if last:
                reader.check_length(decoded)  # a truncated file fails as load_audio does
            chunk = np.ascontiguousarray(raw.T)
            out = chunk if resampler is None else resampler.process(chunk, last=last)
            if out.shape[1]:
                buf = np.concatenate([buf, out.astype(np.float32, copy=False)], axis=1)
            while buf.shape[1] >= block:
                yield np.ascontiguousarray(buf[0, :block] if mono else buf[:, :block])
                emitted_any = True
                buf = buf[:, step:].copy()
            raw = following
        if buf.shape[1] > (block - step if emitted_any else 0):
            yield np.ascontiguousarray(buf[0] if mono else buf)
        elif not emitted_any:
            raise AudioError(f"{name}: no audio samples decoded (the file holds no audio frames)")


__all__ = ["DECODERS", "FALLBACK_WARNING", "available", "check_decoder", "decode", "stream_blocks"]
