"""MP3 files that are several MP3 streams joined end to end (``cat a.mp3 b.mp3 > ab.mp3``).

Each stream an encoder writes starts with a Xing/Info (LAME) or VBRI frame that announces the
stream's length. libsndfile (and libmpg123 reading a file) take the first announcement as the
length of the whole file and stop there with gapless trimming: three joined 1-hour recordings
decode as one hour, without an error. :func:`mp3_parts` finds where each joined stream starts (a
Xing/Info/VBRI frame after the first, together with an ID3v2 tag right before it) so the caller
can decode every part and concatenate them (see :mod:`musetag.audio.io`).

Only the byte patterns ``Xing``/``Info``/``VBRI`` are searched (``bytes.find``, fast even over
a 3-hour file); a hit counts only where it sits at the side-information offset of a valid MPEG
audio Layer III frame header, so the same bytes inside compressed audio are ignored.
"""
from __future__ import annotations

import io
import mmap
import os
from pathlib import Path

__all__ = ["file_layout", "mp3_parts", "RangeReader"]

_TAGS = (b"Xing", b"Info", b"VBRI")


def _header(data, pos: int) -> tuple[int, bool] | None:
    """``(mpeg_version_bits, mono)`` of a valid Layer III frame header at ``pos``, else None."""
    if pos < 0 or pos + 4 > len(data):
        return None
    b0, b1, b2, b3 = data[pos], data[pos + 1], data[pos + 2], data[pos + 3]
    if b0 != 0xFF or (b1 & 0xE0) != 0xE0:
        return None
    version = (b1 >> 3) & 3  # 0: MPEG 2.5, 1: reserved, 2: MPEG 2, 3: MPEG 1
    layer = (b1 >> 1) & 3  # 1: Layer III
    bitrate, rate = b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer != 1 or bitrate in (0, 15) or rate == 3:
        return None
    return version, (b3 >> 6) == 3


def _side_info(version: int, mono: bool) -> int:
    if version == 3:
        return 17 if mono else 32
    return 9 if mono else 17


def _stream_starts(data) -> list[int]:
    """Byte offsets of the frames that open an encoder's stream (Xing/Info/VBRI), in order."""
    starts: set[int] = set()
    for tag in _TAGS:
        pos = data.find(tag)
        while pos >= 0:
            offsets = (36,) if tag == b"VBRI" else (36, 21, 13)
            for back in offsets:
                head = _header(data, pos - back)
                if head is None:
                    continue
                if tag == b"VBRI" or _side_info(*head) + 4 == back:
                    starts.add(pos - back)
                    break
            pos = data.find(tag, pos + 1)
    return sorted(starts)


def _id3_before(data, start: int, lo: int) -> int:
    """Where an ID3v2 tag that ends exactly at ``start`` begins (searched after ``lo``), else ``start``."""
    pos = data.find(b"ID3", lo, start)
    while pos >= 0:
        head = data[pos : pos + 10]
        if len(head) == 10 and head[3] in (2, 3, 4) and all(b < 0x80 for b in head[6:10]):
            size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
            end = pos + 10 + size + (10 if head[5] & 0x10 else 0)
            if end == start:
                return pos
        pos = data.find(b"ID3", pos + 1, start)
    return start


def _parts_of(data, starts: list[int] | None = None) -> list[tuple[int, int]]:
    n = len(data)
    starts = _stream_starts(data) if starts is None else starts
    cuts = [0]
    for s in starts:
        if s == 0 or s <= cuts[-1]:
            continue
        cut = _id3_before(data, s, max(cuts[-1], s - (1 << 20)))
        if cut > cuts[-1]:
            cuts.append(cut)
    parts = []
    for a, b in zip(cuts, cuts[1:] + [n]):
        if b - a >= 128 and data[b - 128 : b - 125] == b"TAG":  # an ID3v1 tag closes the part
            b -= 128
        parts.append((a, b))
    return parts


def mp3_parts(source) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` byte ranges of the MP3 streams joined in ``source`` (a path,
    ``io.BytesIO`` or seekable binary file object); one range for an ordinary file."""
    if isinstance(source, (str, os.PathLike)):
        return list(file_layout(source)[1])
    if isinstance(source, io.BytesIO):
        return _parts_of(source.getvalue())
    pos = source.tell()
    try:
        source.seek(0)
        return _parts_of(source.read())
    finally:
        source.seek(pos)


#: the last file searched: ``{(path, device, inode, size, mtime_ns): (starts, parts)}``. Opening one
#: file for tagging asks several times (libsndfile's reader, FFmpeg's, the length check); only the
#: last file is kept, so tagging a file again (another song in between) searches it again.
_LAST: dict = {}


def file_layout(path: str | os.PathLike) -> tuple[list[int], list[tuple[int, int]]]:
    """``(stream_starts, parts)`` of an MP3 file (see :func:`mp3_parts`), searched once per file state."""
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        key = (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in _LAST:
            return _LAST[key]
        if st.st_size == 0:
            found: tuple = ([], [(0, 0)])
        else:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                starts = _stream_starts(data)
                found = (starts, _parts_of(data, starts))
    _LAST.clear()
    _LAST[key] = found
    return found


class RangeReader(io.RawIOBase):
    """A read-only, seekable view of bytes ``[start, end)`` of a binary file (what soundfile's
    virtual I/O needs: read/readinto/seek/tell)."""

    def __init__(self, source, start: int, end: int) -> None:
        super().__init__()
        if isinstance(source, (str, os.PathLike, Path)):
            self._fh = open(source, "rb")
            self._own = True
        else:
            self._fh, self._own = source, False
        self.start, self.end, self._pos = int(start), int(end), 0
        self.name = getattr(source, "name", None) if not self._own else os.fspath(source)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        size = self.end - self.start
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: size}[whence]
        self._pos = max(0, min(size, base + int(offset)))
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self.end - self.start - self._pos)
        if n <= 0:
            return 0
        self._fh.seek(self.start + self._pos)
        got = self._fh.readinto(view[:n]) or 0
        self._pos += got
        return got

    def read(self, size: int = -1) -> bytes:
        left = self.end - self.start - self._pos
        size = left if size is None or size < 0 else min(size, left)
        buf = bytearray(max(0, size))
        n = self.readinto(buf)
        return bytes(buf[:n])

    def close(self) -> None:
        if self._own and not self._fh.closed:
            self._fh.close()
        super().close()
