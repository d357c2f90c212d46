"""MP3 files decoded straight through the system's libmpg123, down-mixed inside the decoder.

libsndfile decodes MP3 with libmpg123 too, but always to every channel: a mono model then needs a
stereo float buffer (8 bytes per frame) and a separate pass that averages the channels. libmpg123
can mix the channels itself (``MPG123_MONO_MIX``, applied to the spectral values before the
synthesis filterbank), which halves the decoded buffer and removes that pass; fed the file from
memory, it spends about 15 % less CPU than soundfile + averaging on the shared songs (the bulk of
the time of tagging an MP3 on a CPU, see ``bench/tagging.py``). The result equals the channel average of the
stereo decode to float rounding (max |diff| ~ 5e-6 on the shared Jamendo songs; tested).

Used by :func:`musetag.audio.load_audio` for whole MP3 files read into a mono model when the
library is on the system (Debian/Ubuntu ``libmpg123-0``, macOS ``brew install mpg123``); otherwise,
or with ``MUSETAG_MPG123=0``, or on any decoding error (the soundfile path then reports it),
soundfile decodes as before. Nothing in musetag requires it.

The binding is ``ctypes`` over libmpg123's stable C API (``mpg123_new/param/format/open/read``);
``off_t`` is taken as C ``long``, so only LP64 platforms (64-bit Linux and macOS) use it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path

import numpy as np

__all__ = ["Mpg123Error", "available", "decode", "decode_file"]

# mpg123.h: enum mpg123_parms
_ADD_FLAGS, _REMOVE_FLAGS = 2, 13
# enum mpg123_param_flags
_MONO_MIX, _QUIET, _GAPLESS, _FORCE_FLOAT, _AUTO_RESAMPLE = 0x4, 0x20, 0x40, 0x400, 0x8000
# enum mpg123_channelcount, mpg123_enc_enum
_MONO, _STEREO, _ENC_FLOAT_32 = 1, 2, 0x200
# enum mpg123_errors
_OK, _DONE, _NEW_FORMAT, _NEED_MORE = 0, -12, -11, -10
#: every sample rate MPEG audio layers I-III define; allowing them all keeps the file's own rate
_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class Mpg123Error(RuntimeError):
    """libmpg123 could not decode the file (the caller falls back to soundfile)."""


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    c_void_p, c_int, c_long, c_size_t = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_size_t
    sig = {
        "mpg123_init": ([], c_int),
        "mpg123_new": ([ctypes.c_char_p, ctypes.POINTER(c_int)], c_void_p),
        "mpg123_delete": ([c_void_p], None),
        "mpg123_param": ([c_void_p, c_int, c_long, ctypes.c_double], c_int),
        "mpg123_format_none": ([c_void_p], c_int),
        "mpg123_format": ([c_void_p, c_long, c_int, c_int], c_int),
        "mpg123_open_feed": ([c_void_p], c_int),
        "mpg123_set_filesize": ([c_void_p, c_long], c_int),
        "mpg123_feed": ([c_void_p, ctypes.c_void_p, c_size_t], c_int),
        "mpg123_close": ([c_void_p], c_int),
        "mpg123_getformat": ([c_void_p, ctypes.POINTER(c_long), ctypes.POINTER(c_int), ctypes.POINTER(c_int)], c_int),
        "mpg123_length": ([c_void_p], c_long),
        "mpg123_read": ([c_void_p, c_void_p, c_size_t, ctypes.POINTER(c_size_t)], c_int),
        "mpg123_strerror": ([c_void_p], ctypes.c_char_p),
        "mpg123_plain_strerror": ([c_int], ctypes.c_char_p),
    }
    for name, (args, res) in sig.items():
        fn = getattr(lib, name)  # AttributeError: not a usable libmpg123
        fn.argtypes, fn.restype = args, res
    return lib


def _load() -> ctypes.CDLL | None:
    global _lib, _tried
    with _lock:
        if _tried:
            return _lib
        _tried = True
        if ctypes.sizeof(ctypes.c_long) != 8 or os.name != "posix":
            return None
        for name in (ctypes.util.find_library("mpg123"), "libmpg123.so.0", "libmpg123.0.dylib"):
            if not name:
                continue
            try:
                lib = _bind(ctypes.CDLL(name))
            except (OSError, AttributeError):
                continue
            lib.mpg123_init()  # required before 1.27, a no-op since
            _lib = lib
            break
        return _lib


def available() -> bool:
    """True when libmpg123 is loadable and not disabled with ``MUSETAG_MPG123=0``."""
    if os.environ.get("MUSETAG_MPG123", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return _load() is not None


def decode_file(path: str | os.PathLike, *, mono: bool, quiet: bool = False) -> tuple[np.ndarray, int]:
    """Decode a whole MP3 file; see :func:`decode`."""
    with open(path, "rb") as f:
        return decode(f.read(), mono=mono, quiet=quiet)


def decode(data: bytes | bytearray | memoryview, *, mono: bool, quiet: bool = False) -> tuple[np.ndarray, int]:
    """Decode a whole MP3 held in memory: ``((frames, channels) float32, sample_rate)``.

    ``mono=True`` mixes the channels in the decoder (one column); otherwise the file's channels.
    The settings are libsndfile's (float output, gapless trimming of the encoder delay and padding
    announced by the LAME/Xing header), so the samples are the ones soundfile returns (tested).
    The bytes are fed to libmpg123 at once: its file reader would make ~10,000 small ``read``
    calls per song, about 8 % of the decoding time. Raises :class:`Mpg123Error`.

    Every frame of the bytes is decoded, also after the length a Xing/Info header announces (MP3
    files joined with ``cat``). libmpg123's messages about damaged data go to stderr unless
    ``quiet`` (``MPG123_QUIET``); :func:`musetag.audio.load_audio` captures them into the file's
    notes.
    """
    lib = _load()
    if lib is None:
        raise Mpg123Error("libmpg123 is not available")
    view = memoryview(data).cast("B")
    if not view.nbytes:
        raise Mpg123Error("no data")
    err = ctypes.c_int(0)
    handle = lib.mpg123_new(None, ctypes.byref(err))
    if not handle:
        raise Mpg123Error(f"mpg123_new failed: {lib.mpg123_plain_strerror(err.value).decode(errors='replace')}")
    opened = False
    try:
        lib.mpg123_param(handle, _REMOVE_FLAGS, _AUTO_RESAMPLE, 0.0)
        # not _QUIET: what libmpg123 says about a damaged stream (skipped junk, resyncs) goes to
        # stderr, where musetag.audio.io captures it into the file's notes instead of losing it
        flags = _GAPLESS | _FORCE_FLOAT | (_QUIET if quiet else 0) | (_MONO_MIX if mono else 0)
        lib.mpg123_param(handle, _ADD_FLAGS, flags, 0.0)
        lib.mpg123_format_none(handle)
        for rate in _RATES:
            lib.mpg123_format(handle, rate, _MONO if mono else (_MONO | _STEREO), _ENC_FLOAT_32)
        if lib.mpg123_open_feed(handle) != _OK:
            raise Mpg123Error(_message(lib, handle))
        opened = True
        lib.mpg123_set_filesize(handle, view.nbytes)  # lets it trust the header's length
        raw = np.frombuffer(view, dtype=np.uint8)  # no copy; libmpg123 copies what it is fed
        if lib.mpg123_feed(handle, raw.ctypes.data, raw.size) != _OK:
            raise Mpg123Error(_message(lib, handle))
        rate, channels, encoding = ctypes.c_long(), ctypes.c_int(), ctypes.c_int()
        if lib.mpg123_getformat(handle, ctypes.byref(rate), ctypes.byref(channels), ctypes.byref(encoding)) != _OK:
            raise Mpg123Error(_message(lib, handle))
        if encoding.value != _ENC_FLOAT_32 or channels.value not in (1, 2):
            raise Mpg123Error(f"unexpected output format (encoding {encoding.value}, {channels.value} channels)")
        ch = channels.value
        # the length the header announces sizes the buffer once; it grows if the stream is longer
        announced = max(int(lib.mpg123_length(handle)), 0)
        buf = np.empty((announced + 4 * 1152) * ch, dtype=np.float32)
        pos = 0
        done = ctypes.c_size_t(0)
        while True:
            if pos == buf.size:
                buf = np.concatenate([buf, np.empty(max(buf.size // 2, 1 << 20), dtype=np.float32)])
            rc = lib.mpg123_read(handle, buf[pos:].ctypes.data, (buf.size - pos) * 4, ctypes.byref(done))
            pos += done.value // 4
            if rc in (_DONE, _NEED_MORE):  # all the bytes were fed: needing more is the end
                break
            if rc == _NEW_FORMAT:
                raise Mpg123Error("the output format changes inside the stream")
            if rc != _OK:
                raise Mpg123Error(_message(lib, handle))
        pos -= pos % ch
        return buf[:pos].reshape(-1, ch), int(rate.value)
    finally:
        if opened:
            lib.mpg123_close(handle)
        lib.mpg123_delete(handle)


def _message(lib: ctypes.CDLL, handle) -> str:
    text = lib.mpg123_strerror(handle)
    return text.decode(errors="replace") if text else "libmpg123 error"
