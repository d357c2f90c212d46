"""What C libraries write to file descriptor 2, caught while a block runs instead of reaching the terminal.

Python's ``contextlib.redirect_stderr`` only swaps ``sys.stderr``; libmpg123, libsndfile, FFmpeg and Ray's C++
core worker write to the descriptor itself. :func:`captured_stderr` points descriptor 2 at a temporary file
for the block and hands back the lines written (Python's own writes to ``sys.stderr`` included), so the
caller decides what the user sees: the decoders' messages become a file's notes
(:mod:`musetag.audio.sources`), Ray's start-up notice is dropped (:mod:`musetag.commands._ray_cli`).
Serialised: the descriptor is process-wide.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["captured_stderr"]

_LOCK = threading.RLock()


@contextmanager
def captured_stderr(lines: list[str], *, most_bytes: int = 64 * 1024) -> Iterator[None]:
    """Collect into ``lines`` what is written to descriptor 2 while the block runs (at most ``most_bytes``
    of it, one string per line, as written); nothing is collected when the process has no stderr."""
    with _LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing can leak
            yield
            return
        tmp = tempfile.TemporaryFile()
        try:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (AttributeError, OSError, ValueError):
                    pass
                os.dup2(saved, 2)
        finally:
            os.close(saved)
            tmp.seek(0)
            raw = tmp.read(most_bytes)
            tmp.close()
            lines.extend(raw.decode("utf-8", "replace").splitlines())
