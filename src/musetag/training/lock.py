"""One ``musetag train`` per run folder: an exclusive ``flock`` on ``RUN_DIR/.musetag-train.lock``.

Two processes training into one folder would interleave their checkpoints and duplicate metric
rows. The second one is refused at once, with a message naming the folder and the process that
holds it (pid, host, command, start time, written into the lock file). The kernel releases a
``flock`` when its process ends, however it ends: a run killed with ``kill -9`` never leaves a
stale lock behind (the file stays, the lock does not). Under ``torchrun`` only rank 0 takes it (the
other ranks of the same job write nothing on their own).

``flock`` is advisory and local: on NFS it may not exclude a process on another machine.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from musetag.errors import ConfigError

LOCK_FILE = ".musetag-train.lock"

# lock descriptors this process holds: a forked child (data-loader or feature workers) inherits them,
# and a flock lasts while any copy is open, so a child outliving a killed trainer would keep the run
# folder locked; children close their copies at once (the parent's lock is not affected)
_HELD: set[int] = set()


def _close_in_child() -> None:
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


@contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path | None]:
    """Hold the run folder's lock for the block (creates the folder); raises :class:`ConfigError`
    naming the holder when another process has it. A no-op on ranks other than 0 and where
    ``fcntl`` does not exist (Windows)."""
    if _rank() != 0:
        yield None
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield None
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    _HELD.add(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"{run_dir} is being trained into by another process ({_holder(fd)}); wait for it to finish or stop "
                "it, or train into another --out folder"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield path
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        _HELD.discard(fd)
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that has not written its name yet"
    text = f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}"
    if info.get("command"):
        text += f": {info['command']}"
    return text
