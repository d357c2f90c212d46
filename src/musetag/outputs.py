"""Output paths checked before any work: a command that cannot write its ``--out`` says so in one
line, naming the path and the fix, instead of failing with a traceback after minutes of work."""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

from musetag.errors import ConfigError

__all__ = ["DISK_FULL_ERRNOS", "check_writable", "describe_os_error", "file_mode", "removed_on_error",
           "write_bytes_atomic", "write_text_atomic"]

#: write errors that no later file of the same folder escapes: a full disk or quota, a read-only file system, and
#: numpy's short write (an OSError without errno); a run that meets one stops instead of failing file after file
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, None)


@contextmanager
def removed_on_error(tmp: str | os.PathLike):
    """Remove the temporary file ``tmp`` when the block fails (a full disk, a kill): no half-written file stays."""
    try:
        yield
    except BaseException:
        try:
            Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass
        raise


def file_mode() -> int:
    """0o666 minus the umask: what a plain ``open()`` would create. A temporary file from ``mkstemp`` is 0o600,
    and renamed over an output it would leave that output readable by its owner only."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_writable(path: str | os.PathLike, *, flag: str = "--out", folder: bool = False) -> Path:
    """Refuse an output that cannot be created: an existing folder where a file is wanted (or the
    reverse), a path below a regular file, a folder without write permission or on a read-only
    file system. Returns ``Path(path)``; creates nothing."""
    p = Path(path)
    if p.exists():
        if folder and not p.is_dir():
            raise ConfigError(f"{flag} {p} exists and is not a folder; choose a folder for {flag}")
        if not folder and p.is_dir():
            raise ConfigError(f"{flag} {p} is a folder; give the name of a file to write")
        where = p if folder else p.parent
    else:
        where = p.parent
        while not where.exists() and where != where.parent:
            if where.is_symlink():  # a dangling link in the way
                raise ConfigError(f"{flag} {p}: {where} is a dangling symbolic link; fix it or choose another {flag}")
            where = where.parent
        if where.exists() and not where.is_dir():
            raise ConfigError(f"{flag} {p}: {where} is a file, not a folder; choose another {flag}")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{flag} {p}: cannot write in {where} (no write permission, or a read-only file system); "
            f"choose another {flag} or fix the folder's permissions"
        )
    return p


_FIXES = {
    errno.EACCES: "fix the permissions or choose another output",
    errno.EPERM: "fix the permissions or choose another output",
    errno.EROFS: "the file system is read-only: choose an output on a writable disk",
    errno.ENOSPC: "the disk is full: free space or choose another output",
    errno.EDQUOT: "the disk quota is exceeded: free space or choose another output",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder: give the name of a file",
    errno.ENOENT: "check the path",
    errno.EEXIST: "it exists already: remove it or choose another path",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the file, what went wrong, and the fix."""
    what = exc.strerror or str(exc)
    name = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        name = f"{name} -> {exc.filename2}"
    fix = _FIXES.get(exc.errno or -1, "check the path and the disk")
    return f"{name}: {what}; {fix}" if name else f"{what}; {fix}"


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename: a process killed in the
    middle leaves the old file (or none), never a truncated one that a later reader chokes on. ``durable``:
    flushed to the disk (fsync) before the rename, for files a crash must not lose. The file gets the mode
    ``open()`` would give it; an error names ``path``, not the temporary file."""
    import tempfile

    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    with removed_on_error(tmp):
        os.chmod(tmp, file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike, text: str, *, durable: bool = False) -> None:
    """:func:`write_bytes_atomic` of ``text`` in UTF-8, written as it is (no newline translation)."""
    write_bytes_atomic(path, text.encode("utf-8"), durable=durable)
