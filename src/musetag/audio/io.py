"""Decoding audio: paths, bytes and file objects; seeking; streaming fixed-length blocks.

soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF...) does the decoding. Containers it
cannot read (MP4/M4A/AAC, WMA, WebM...) are decoded by ``ffmpeg`` when it is on ``PATH``. Every
failure becomes an :class:`~musetag.errors.AudioError` naming the source, what is wrong and the fix.

MP3 files made of several joined streams (``cat a.mp3 b.mp3``) are decoded part by part, so every
frame is decoded (libsndfile alone stops at the length the first stream announces; see
:mod:`musetag.audio.mp3parts`). What the C decoders print on the process's stderr ("Note: Illegal
Audio-MPEG-Header ...") is captured instead of leaking: it becomes part of the error message of a
file that fails, and a *note* of a file that decodes; :func:`collect_notes` gathers the notes of
the files decoded inside it (the tagger writes them to the file's ``warnings``), outside it they
are logged as warnings.
"""
from __future__ import annotations

import io
import logging
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from musetag.audio.ops import resample as _resample
from musetag.audio.sources import (  # noqa: F401  (re-exported: the public names and what io used to hold)
    _FFMPEG_CONTAINERS,
    _TRUNCATION_TOLERANCE_FRAC,
    _TRUNCATION_TOLERANCE_S,
    AudioSource,
    _decoder_messages,
    _downmix_frames,
    _explain_open_failure,
    _normalise_source,
    _note_said,
    _read_head,
    _said,
    _sniff,
    collect_notes,
    describe_source,
    notes_once,
)
from musetag.errors import AudioError

log = logging.getLogger(__name__)

_MP3_PREROLL_FRAMES = 16 * 1152  # 16 MPEG-1 Layer III frames


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header (nothing is decoded)."""

    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@contextmanager
def _open_soundfile(source: AudioSource, name: str) -> Iterator[sf.SoundFile]:
    said: list[str] = []
    try:
        with _decoder_messages(said):
            handle = sf.SoundFile(source if not isinstance(source, Path) else str(source))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise _explain_open_failure(source, name, exc) from exc
    if handle.format == "MP3":
        try:
            parts = _mp3_parts(source)
        except (OSError, ValueError):
            parts = []
        if len(parts) > 1:  # joined streams: the first one's header does not describe the file
            handle.close()
            handle = _JoinedMP3(source, name, parts)
            said = []
    _note_said(name, said)
    try:
        yield handle
    finally:
        handle.close()


def _mp3_parts(source: AudioSource) -> list[tuple[int, int]]:
    from musetag.audio.mp3parts import mp3_parts

    return mp3_parts(str(source) if isinstance(source, Path) else source)


class _JoinedMP3:
    """MP3 streams joined in one file, read as one sound file (the subset of ``sf.SoundFile``
    musetag uses: ``samplerate, channels, frames, format, subtype, seek, read, close``)."""

    def __init__(self, source: AudioSource, name: str, parts: list[tuple[int, int]]) -> None:
        from musetag.audio.mp3parts import RangeReader

        self.name = name
        self.byte_parts = list(parts)  # what a whole-file libmpg123 decode reads part by part
        self._readers: list = []
        self._parts: list[sf.SoundFile] = []
        try:
            for start, end in parts:
                reader = RangeReader(source, start, end)
                self._readers.append(reader)
                said: list[str] = []
                try:
                    with _decoder_messages(said):
                        self._parts.append(sf.SoundFile(reader))
                except (sf.LibsndfileError, RuntimeError) as exc:
                    raise AudioError(
                        f"{name}: joins several MP3 streams and the one at byte {start} cannot be read ({exc}"
                        f"{'; ' + _said(said) if said else ''}); re-encode the file"
                    ) from exc
                _note_said(name, said)
            first = self._parts[0]
            for part, (start, _) in zip(self._parts[1:], parts[1:]):
                if (part.samplerate, part.channels) != (first.samplerate, first.channels):
                    raise AudioError(
                        f"{name}: joins MP3 streams of different formats ({first.samplerate} Hz x {first.channels} "
                        f"and, from byte {start}, {part.samplerate} Hz x {part.channels}); split the file or "
                        "re-encode it as one stream"
                    )
        except BaseException:
            self.close()
            raise
        self.samplerate, self.channels = first.samplerate, first.channels
        self.format, self.subtype = first.format, first.subtype
        self.frames = sum(int(p.frames) for p in self._parts)
        self._i = 0

    def seek(self, frame: int) -> int:
        left = int(frame)
        for i, part in enumerate(self._parts):
            if left < part.frames or i == len(self._parts) - 1:
                part.seek(min(left, int(part.frames)))
                for later in self._parts[i + 1 :]:
                    later.seek(0)
                self._i = i
                return int(frame)
            left -= int(part.frames)
        return int(frame)

    def read(self, frames: int = -1, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        out = []
        need = int(frames)
        while self._i < len(self._parts):
            chunk = self._parts[self._i].read(frames=need if need >= 0 else -1, dtype=dtype, always_2d=True)
            out.append(chunk)
            if need >= 0:
                need -= chunk.shape[0]
                if need <= 0:
                    break
            self._i += 1
        if not out:
            return np.zeros((0, self.channels), dtype=dtype)
        return out[0] if len(out) == 1 else np.concatenate(out, axis=0)

    def close(self) -> None:
        for part in self._parts:
            part.close()
        for reader in self._readers:
            reader.close()
        self._parts, self._readers = [], []


# ---------------------------------------------------------------------------------- ffmpeg path
def _ffmpeg_container(source: AudioSource) -> str | None:
    kind = _sniff(_read_head(source))
    return kind if kind in _FFMPEG_CONTAINERS else None


def _decode_with_ffmpeg(
    source: AudioSource, name: str, kind: str, offset: float, duration: float | None
) -> tuple[np.ndarray, int]:
    """Decode through ``ffmpeg`` to 32-bit float WAV on a pipe; returns ``(channels, samples)``."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(
            f"{name}: {_FFMPEG_CONTAINERS[kind]} audio cannot be decoded by libsndfile and ffmpeg is not on PATH; "
            "install ffmpeg (e.g. 'apt install ffmpeg' or 'conda install ffmpeg') or convert the file to WAV/FLAC"
        )
    cmd = [ffmpeg, "-nostdin", "-v", "error"]
    if offset > 0:
        cmd += ["-ss", f"{offset:.6f}"]
    if duration is not None:
        cmd += ["-t", f"{duration:.6f}"]
    stdin_data = None
    if isinstance(source, Path):
        cmd += ["-i", str(source)]
    else:
        cmd += ["-i", "pipe:0"]
        source.seek(0)
        stdin_data = source.read()
    cmd += ["-vn", "-f", "wav", "-acodec", "pcm_f32le", "pipe:1"]
    proc = subprocess.run(cmd, input=stdin_data, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioError(
            f"{name}: ffmpeg could not decode this {_FFMPEG_CONTAINERS[kind]} file "
            f"({detail[-1] if detail else 'no output'}); the file is probably truncated or corrupt"
        )
    data, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return data, int(sr)  # (frames, channels)


# ---------------------------------------------------------------------------------------- public
def audio_info(source: AudioSource) -> AudioInfo:
    """Sample rate, channels, frames, duration, format and subtype of ``source`` (header only).

    For containers that need ffmpeg the file is decoded once to count its frames. MP3 streams
    joined in one file count together. What the decoder says while reading the header is not
    reported here (decoding the file reports it).
    """
    src, name = _normalise_source(source)
    kind = _ffmpeg_container(src)
    if kind is not None:
        data, sr = _decode_with_ffmpeg(src, name, kind, 0.0, None)
        return AudioInfo(sr, data.shape[1], data.shape[0], data.shape[0] / sr, kind.upper(), "ffmpeg")
    with collect_notes(), _open_soundfile(src, name) as f:
        frames = int(f.frames)
        return AudioInfo(int(f.samplerate), int(f.channels), frames, frames / f.samplerate, f.format, f.subtype)


def load_audio(
    source: AudioSource,
    *,
    sample_rate: int | None = None,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
    resample_method: str = "soxr_hq",
    decoder: str = "auto",
) -> tuple[np.ndarray, int]:
    """Decode ``source`` into float32 samples in [-1, 1].

    Parameters
    ----------
    source: a path (``str``/``Path``), ``bytes`` (an upload) or a binary file object.
    sample_rate: resample to this rate (soxr, high quality); ``None`` keeps the file's rate.
    mono: average the channels; the result is ``(samples,)``. Otherwise ``(channels, samples)``.
    offset, duration: in seconds. Only that part is decoded: the decoder seeks to ``offset``
        instead of decoding the file from its start.
    resample_method: see :func:`musetag.audio.ops.resample`.
    decoder: ``"auto"`` (libsndfile / libmpg123, ffmpeg for other containers) or ``"essentia"``:
        FFmpeg through PyAV exactly as Essentia's ``AudioLoader``/``MonoLoader`` decode (the
        ``jamendo96`` preset; see :mod:`musetag.audio.ffmpeg_decode`; without PyAV: one warning,
        then ``"auto"``).

    Returns ``(audio, sample_rate)``. Silence is valid audio; a file with no frames at all, or an
    offset past its end, is an :class:`AudioError`.
    """
    if offset < 0:
        raise AudioError(f"{describe_source(source)}: offset must be >= 0 seconds, got {offset}")
    if duration is not None and duration <= 0:
        raise AudioError(f"{describe_source(source)}: duration must be > 0 seconds, got {duration}")
    src, name = _normalise_source(source)
    kind = _ffmpeg_container(src)
    with notes_once(name):
        if _essentia_decoder(decoder):
            from musetag.audio import ffmpeg_decode

            data, sr = ffmpeg_decode.decode(src, name, offset=offset, duration=duration, mono=mono)
        elif kind is not None:
            data, sr = _decode_with_ffmpeg(src, name, kind, offset, duration)
        else:
            data, sr = _read_soundfile(src, name, offset, duration, mono=mono)  # (frames, channels)
    if data.shape[0] == 0:
        raise AudioError(
            f"{name}: no audio samples decoded"
            + (f" from {offset:.2f} s on (the file is shorter)" if offset > 0 else " (the file holds no audio frames)")
        )
    audio = _downmix_frames(data) if mono else data.T  # a view: (channels, samples) over the decoded frames
    if sample_rate is not None and int(sample_rate) != sr:
        audio = _resample(audio, sr, int(sample_rate), method=resample_method)
        sr = int(sample_rate)
    return audio, sr


def _essentia_decoder(decoder: str) -> bool:
    """``decoder="essentia"`` and PyAV importable (else one warning and the usual decoders)."""
    from musetag.audio import ffmpeg_decode

    return ffmpeg_decode.check_decoder(decoder) == "essentia" and ffmpeg_decode.available()


def _read_soundfile(
    source: AudioSource, name: str, offset: float, duration: float | None, *, mono: bool = False
) -> tuple[np.ndarray, int]:
    """``(frames, channels)`` float32 and the rate; ``mono`` allows a decoder that mixes the
    channels itself to return a single column (whole MP3 files with libmpg123, see ``mpg123.py``)."""
    with _open_soundfile(source, name) as f:
        sr = int(f.samplerate)
        total = int(f.frames)
        subtype = f.subtype
        start = int(round(offset * sr))
        if total > 0 and start >= total:
            raise AudioError(
                f"{name}: offset {offset:.2f} s is past the end of the audio ({total / sr:.2f} s); use a smaller offset"
            )
        want = -1 if duration is None else max(1, int(round(duration * sr)))
        # libsndfile's MP3 decoder (mpg123) can return silence for the first frames after a seek
        # (bit reservoir not primed): seek a little earlier and drop the pre-roll.
        preroll = min(start, _MP3_PREROLL_FRAMES) if f.format == "MP3" else 0
        data = None
        if f.format == "MP3" and start == 0 and want < 0:
            data = _decode_mp3_whole(source, sr, name, mono=mono, parts=getattr(f, "byte_parts", None))
        said: list[str] = []
        try:
            if data is None:
                with _decoder_messages(said):
                    if start:
                        f.seek(start - preroll)
                    data = f.read(frames=want if want < 0 else want + preroll, dtype="float32", always_2d=True)
                data = data[preroll:]
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(
                f"{name}: the audio data is corrupt ({exc}{'; ' + _said(said) if said else ''}); "
                "re-download or re-encode the file"
            ) from exc
        _note_said(name, said)
    expected = (total - start) if want < 0 else min(want, total - start)
    got = data.shape[0]
    if total > 0 and expected - got > max(_TRUNCATION_TOLERANCE_S * sr, _TRUNCATION_TOLERANCE_FRAC * expected):
        raise AudioError(
            f"{name}: the file is truncated: its header announces {total / sr:.1f} s but the audio data ends "
            f"after {(start + got) / sr:.1f} s; re-download or re-encode the file"
        )
    # only floating-point PCM can hold NaN/inf; decoders of compressed formats never produce them
    if subtype in ("FLOAT", "DOUBLE") and not np.isfinite(data).all():
        raise AudioError(f"{name}: the decoded samples contain NaN or infinity; the file is corrupt, re-encode it")
    return data, sr


def _decode_mp3_whole(
    source: AudioSource, sample_rate: int, name: str = "", *, mono: bool, parts: list | None = None
) -> np.ndarray | None:
    """A whole MP3 (a path, an upload, a file object) decoded by libmpg123, ``(frames, channels)``
    float32, with ``mono`` the channels mixed inside the decoder (one column); or ``None`` (not
    installed, disabled, or it failed: soundfile then decodes it and reports any problem). Every kind
    of source gives the samples soundfile gives. ``parts``: the byte ranges of joined streams when the
    caller found them already (:class:`_JoinedMP3`), so the file is not searched twice."""
    from musetag.audio import mpg123

    if not mpg123.available():
        return None
    said: list[str] = []
    try:
        with _decoder_messages(said):
            if isinstance(source, Path):
                with open(source, "rb") as fh:
                    payload = fh.read()
            elif isinstance(source, io.BytesIO):
                payload = source.getbuffer()
            else:  # a seekable binary file object: soundfile reads it from its start too
                pos = source.tell()
                source.seek(0)
                payload = source.read()
                source.seek(pos)
            # joined streams are decoded one by one, each trimmed by its own gapless header
            # (the samples soundfile gives for the same parts)
            view = memoryview(payload)
            if parts is None:  # an ordinary file: soundfile opened it as one stream
                parts = [(0, len(view))]
            decoded = [mpg123.decode(view[a:b], mono=mono) for a, b in parts]
            rate = decoded[0][1]
            if any(r != rate for _, r in decoded) or any(d.shape[1] != decoded[0][0].shape[1] for d, _ in decoded):
                return None
            data = decoded[0][0] if len(decoded) == 1 else np.concatenate([d for d, _ in decoded])
    except (mpg123.Mpg123Error, OSError, ValueError, TypeError):
        return None
    if rate != sample_rate or not data.shape[0]:
        return None
    _note_said(name or describe_source(source), said)
    return data


def stream_blocks(
    source: AudioSource,
    block_seconds: float,
    *,
    sample_rate: int | None = None,
    mono: bool = True,
    overlap_seconds: float = 0.0,
    resample_method: str = "soxr_hq",
    decoder: str = "auto",
) -> Iterator[np.ndarray]:
    """Yield consecutive float32 blocks of ``block_seconds`` (the last one may be shorter).

    Consecutive blocks start ``block_seconds - overlap_seconds`` apart. Memory stays bounded by a
    few blocks whatever the length of the file (a 3-hour recording is fine): the file is read
    incrementally and resampled with soxr's streaming resampler, so the concatenation of
    non-overlapping blocks equals ``load_audio(source, sample_rate=...)`` up to resampler edge
    effects. Mono blocks are ``(samples,)``; otherwise ``(channels, samples)``.
    ffmpeg-only containers are decoded whole first (no streaming decoder for them).
    ``decoder="essentia"``: see :func:`load_audio`; decoded frame by frame, and with
    ``resample_method="linear"`` the blocks join to exactly ``load_audio``'s samples.
    """
    if block_seconds <= 0:
        raise AudioError(f"{describe_source(source)}: block_seconds must be > 0, got {block_seconds}")
    if not 0 <= overlap_seconds < block_seconds:
        raise AudioError(
            f"{describe_source(source)}: overlap_seconds must be in [0, block_seconds), got {overlap_seconds}"
        )
    src, name = _normalise_source(source)
    if _essentia_decoder(decoder):
        from musetag.audio import ffmpeg_decode

        yield from ffmpeg_decode.stream_blocks(
            src, name, block_seconds, sample_rate, mono, overlap_seconds, resample_method
        )
        return
    kind = _ffmpeg_container(src)
    if kind is not None:
        audio, sr = load_audio(src, sample_rate=sample_rate, mono=mono, resample_method=resample_method)
        yield from _blocks_from_array(audio, sr, block_seconds, overlap_seconds)
        return
    yield from _stream_soundfile(src, name, block_seconds, sample_rate, mono, overlap_seconds, resample_method)


def _blocks_from_array(audio: np.ndarray, sr: int, block_seconds: float, overlap_seconds: float) -> Iterator[np.ndarray]:
    block = max(1, int(round(block_seconds * sr)))
    step = max(1, block - int(round(overlap_seconds * sr)))
    n = audio.shape[-1]
    start = 0
    while start < n:
        yield audio[..., start : start + block]
        if start + block >= n:
            break
        start += step


def _stream_soundfile(
    source: AudioSource,
    name: str,
    block_seconds: float,
    sample_rate: int | None,
    mono: bool,
    overlap_seconds: float,
    resample_method: str,
) -> Iterator[np.ndarray]:
    from musetag.audio.ops import stream_resampler

    with _open_soundfile(source, name) as f:
        in_sr = int(f.samplerate)
        out_sr = int(sample_rate) if sample_rate else in_sr
        channels = 1 if mono else int(f.channels)
        block = max(1, int(round(block_seconds * out_sr)))
        step = max(1, block - int(round(overlap_seconds * out_sr)))
        resampler = stream_resampler(in_sr, out_sr, channels, resample_method)
        read_frames = max(4096, int(block * in_sr / out_sr))
        buf = np.zeros((channels, 0), dtype=np.float32)
        emitted_any = False
        while True:
            said: list[str] = []
            try:
                with _decoder_messages(said):
                    raw = f.read(frames=read_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(
                    f"{name}: the audio data is corrupt ({exc}{'; ' + _said(said) if said else ''}); "
                    "re-download or re-encode the file"
                ) from exc
            _note_said(name, said)
            last = raw.shape[0] < read_frames
            chunk = _downmix_frames(raw)[None, :] if mono else raw.T
            out = chunk if resampler is None else resampler.process(chunk, last=last)
            if out.shape[1]:
                buf = np.concatenate([buf, out.astype(np.float32, copy=False)], axis=1)
            while buf.shape[1] >= block:
                yield _shape(buf[:, :block], mono)
                emitted_any = True
                buf = buf[:, step:].copy()
            if last:
                break
        if buf.shape[1] > (block - step if emitted_any else 0):
            yield _shape(buf, mono)
        elif not emitted_any:
            raise AudioError(f"{name}: no audio samples decoded (the file holds no audio frames)")


def _shape(block: np.ndarray, mono: bool) -> np.ndarray:
    return np.ascontiguousarray(block[0] if mono else block)
