"""Where audio comes from, before any decoding: naming a source in messages, checking and opening
paths, bytes and file objects, recognising a file from its first bytes (to explain why it does not
decode), and capturing what C decoders print on stderr into per-file *notes*.

Shared by the decoders of :mod:`musetag.audio.io` (soundfile, ffmpeg) and
:mod:`musetag.audio.ffmpeg_decode` (PyAV), which is why it is its own module.
"""
from __future__ import annotations

import contextvars
import io
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from musetag._stderr import captured_stderr
from musetag.errors import AudioError

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]
log = logging.getLogger("musetag.audio.io")  # the name users filter on, as before the split

# A decoded length more than this much shorter than the header announces means the file was cut.
_TRUNCATION_TOLERANCE_S = 0.5
_TRUNCATION_TOLERANCE_FRAC = 0.02


# --------------------------------------------------------------------------------------- naming
def describe_source(source: AudioSource) -> str:
    """A human name for ``source`` in messages: the path, the upload's name, or its size."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes of uploaded audio>"
    name = getattr(source, "name", None)
    if isinstance(name, (str, bytes)) and name:
        return os.fsdecode(name)
    return "<audio file object>"


# ------------------------------------------------------------------------ decoder messages, notes
_NOTES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("musetag_audio_notes", default=None)
_MAX_SAID = 5  # distinct decoder lines kept per call


@contextmanager
def collect_notes() -> Iterator[list[str]]:
    """Gather, in the returned list, the notes about the files decoded inside the block: what the
    decoder printed about a file that still decoded (skipped junk, resyncs), one line each.
    Outside such a block notes are logged as warnings (never lost, never raw on stderr)."""
    notes: list[str] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        try:
            _NOTES.reset(token)
        except ValueError:  # exited in another context (a generator finished elsewhere)
            _NOTES.set(None)


@contextmanager
def notes_once(name: str) -> Iterator[None]:
    """Inside no :func:`collect_notes` block: the notes of one decode, logged once each when it succeeds and
    dropped when it fails (its error says what went wrong; a truncated MP3's header warning was logged twice,
    then the error). Inside one: nothing to do, the caller collects them."""
    if _NOTES.get() is not None:
        yield
        return
    with collect_notes() as notes:
        yield
    for text in notes:
        log.warning("%s: %s", name, text)


def _note(name: str, text: str) -> None:
    notes = _NOTES.get()
    if notes is None:
        log.warning("%s: %s", name, text)
    elif text not in notes:
        notes.append(text)


@contextmanager
def _decoder_messages(said: list[str]) -> Iterator[None]:
    """Capture what C decoders write to file descriptor 2 while the block runs into ``said``
    (one cleaned line each) instead of the terminal (:func:`musetag._stderr.captured_stderr`)."""
    raw: list[str] = []
    try:
        with captured_stderr(raw):
            yield
    finally:
        for line in raw:
            line = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())  # "[src/libmpg123/parse.c:wetwork():1349] "
            line = re.sub(r"^(Note|Warning|error|Error):\s*", "", line).strip()
            if line and line not in said:
                said.append(line)


def _said(said: list[str]) -> str:
    """The decoder's lines as one clause: ``decoder said: a; b; c (and 2 more)``."""
    if not said:
        return ""
    text = "; ".join(said[:_MAX_SAID])
    if len(said) > _MAX_SAID:
        text += f" (and {len(said) - _MAX_SAID} more)"
    return f"decoder said: {text}"


def _note_said(name: str, said: list[str]) -> None:
    for line in said:
        _note(name, f"decoder said: {line}")


# ------------------------------------------------------------------------------------ sniffing
_FFMPEG_CONTAINERS = {
    "mp4": "MP4/M4A (AAC or ALAC)",
    "asf": "ASF/WMA",
    "mkv": "Matroska/WebM",
    "aac": "raw AAC (ADTS)",
    "amr": "AMR",
    "ac3": "AC-3",
}


def _sniff(head: bytes) -> str:
    """Classify the first bytes of a file: an ffmpeg-only container, 'mp3', 'text' or 'unknown'."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "mkv"
    if head.startswith(b"#!AMR"):
        return "amr"
    if head.startswith(b"\x0b\x77"):
        return "ac3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return "aac"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return "mp3"
    if head.startswith((b"RIFF", b"fLaC", b"OggS", b"FORM")):
        return "known"
    if head and _looks_like_text(head):
        return "text"
    return "unknown"


def _looks_like_text(head: bytes) -> bool:
    sample = head[:512]
    if b"\x00" in sample:
        return False
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample is still text
        try:
            text = sample[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(1, len(text))


# ------------------------------------------------------------------------------------- opening
def _read_head(source: AudioSource, n: int = 4096) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as fh:
            return fh.read(n)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:n])
    pos = source.tell()
    try:  # from the start, as the decoders see a file object (libsndfile's failed open left it anywhere)
        source.seek(0)
        return source.read(n)
    finally:
        source.seek(pos)


def _normalise_source(source: AudioSource) -> tuple[AudioSource, str]:
    """Check existence/emptiness; make bytes and unseekable streams seekable."""
    name = describe_source(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            if path.is_symlink():
                raise AudioError(
                    f"{name}: is a symbolic link to {os.readlink(path)}, which does not exist (or the links loop); "
                    "fix the link or remove it"
                )
            raise AudioError(f"{name}: file not found; check the path (and that the disk is mounted)")
        if path.is_dir():
            raise AudioError(f"{name}: is a directory, not an audio file; pass the files inside it")
        if not path.is_file():  # checked before any open: a pipe's open would wait for a writer
            raise AudioError(f"{name}: is not a regular file (a named pipe, device or socket); pass the audio file "
                             "itself")
        if path.stat().st_size == 0:
            raise AudioError(
                f"{name}: the file is empty (0 bytes); the copy or download did not finish, fetch it again"
            )
        return path, name
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError(f"{name}: the upload is empty (0 bytes); send the audio file's content")
        return io.BytesIO(bytes(source)), name
    if not hasattr(source, "read"):
        raise AudioError(
            f"{name}: cannot read audio from a {type(source).__name__}; pass a path, bytes or a binary file object "
            "(Tagger.tag also takes a numpy array with its sample_rate=)"
        )
    seekable = getattr(source, "seekable", None)
    if seekable is None or not seekable():
        data = source.read()
        if isinstance(data, str):
            raise AudioError(f"{name}: the file object is opened in text mode; open it with 'rb'")
        source = io.BytesIO(data)
    pos = source.tell()
    probe = source.read(1)
    source.seek(pos)
    if isinstance(probe, str):
        raise AudioError(f"{name}: the file object is opened in text mode; open it with 'rb'")
    if not probe:
        raise AudioError(f"{name}: the file object is empty (no bytes to read); send the audio file's content")
    return source, name


def _explain_open_failure(source: AudioSource, name: str, exc: Exception) -> AudioError:
    head = _read_head(source)
    kind = _sniff(head)
    if kind == "text":
        preview = head[:40].decode("utf-8", "replace").splitlines()[0] if head.strip() else ""
        return AudioError(
            f"{name}: this is a text file, not audio (it starts with {preview!r}); "
            "point to the real audio file (WAV, FLAC, MP3, OGG)"
        )
    if kind == "mp3":
        return AudioError(
            f"{name}: the MP3 data is truncated or corrupt (no decodable audio frame found); "
            "re-download or re-encode the file"
        )
    if kind == "known":
        return AudioError(
            f"{name}: the file header is recognised but the audio data is truncated or corrupt ({exc}); "
            "re-download or re-export the file"
        )
    return AudioError(
        f"{name}: not a recognised audio format (the content is neither WAV, FLAC, OGG, MP3 nor a known "
        "container; the file may be corrupt or misnamed); convert it to WAV or FLAC"
    )


def _downmix_frames(data: np.ndarray) -> np.ndarray:
    """``(frames, channels)`` -> ``(frames,)`` channel average (column adds: much faster than mean(axis=1))."""
    channels = data.shape[1]
    if channels == 1 and data.flags.c_contiguous:
        return data[:, 0]  # a contiguous view: nothing to average
    out = np.array(data[:, 0], dtype=np.float32, copy=True)
    for c in range(1, channels):
        out += data[:, c]
    if channels > 1:
        out *= np.float32(1.0 / channels)
    return out
