"""A model package's two files in a folder or an archive: written atomically, read with bounds.

:mod:`musetag.inference.package` says what a package holds; this module moves its bytes. Writes go
through a temporary file and a rename (a folder's files by :func:`musetag.outputs.write_bytes_atomic`): a
killed ``musetag package`` leaves the old package or none.
Reads never trust what a file says about itself: the description is read up to
:data:`MAX_DESCRIPTION_BYTES`, the weights up to the size the description records (or
:data:`MAX_WEIGHTS_BYTES`), streamed, so a crafted archive whose member inflates to gigabytes is refused
after at most a megabyte past the limit (``tests/test_hostile_inputs.py``).
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

from musetag.errors import ModelError
from musetag.outputs import file_mode

__all__ = ["DESCRIPTION_FILE", "MAX_DESCRIPTION_BYTES", "MAX_WEIGHTS_BYTES", "WEIGHTS_FILE", "declared_weights_bytes",
           "read_members", "write_archive"]

DESCRIPTION_FILE = "musetag.json"
WEIGHTS_FILE = "model.safetensors"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def write_archive(out: Path, members: dict[str, bytes]) -> None:
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, file_mode())
    try:
        if str(out).lower().endswith(".zip"):
            with zipfile.ZipFile(tmp, "w") as zf:
                for name, data in members.items():
                    compress = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
                    zf.writestr(name, data, compress_type=compress)
        else:
            mode = "w:gz" if str(out).lower().endswith((".gz", ".tgz")) else "w"
            with tarfile.open(tmp, mode) as tf:
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    info.mode = 0o644
                    tf.addfile(info, io.BytesIO(data))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: a musetag.json is a few kB; anything past this is not a package description
MAX_DESCRIPTION_BYTES = 1 << 20
#: weights of a package whose description records no size may not exceed this (override with
#: MUSETAG_MAX_MODEL_BYTES); with a recorded size, the file must have exactly that size
MAX_WEIGHTS_BYTES = 2 << 30


def _max_weights_bytes() -> int:
    return int(os.environ.get("MUSETAG_MAX_MODEL_BYTES", MAX_WEIGHTS_BYTES))


def declared_weights_bytes(desc: Any, where: str) -> int | None:
    """``weights.bytes`` of a description: None when it records no size, else a whole number of bytes from
    1 to the weights bound; anything else (negative, too large, a string, null, a fraction) is refused."""
    weights = desc.get("weights") if isinstance(desc, dict) else None
    if not isinstance(weights, dict) or "bytes" not in weights:
        return None
    declared, most = weights["bytes"], _max_weights_bytes()
    if not _is_int(declared) or not 0 < declared <= most:
        raise ModelError(
            f"{where}: {DESCRIPTION_FILE} records weights.bytes = {declared!r}, which is not a size of weights "
            f"(a whole number of bytes from 1 to {most:,}); the description is damaged or crafted: re-create the "
            "package with `musetag package`"
            + (" (or raise MUSETAG_MAX_MODEL_BYTES if the model really is that large)"
               if _is_int(declared) and declared > most else "")
        )
    return declared


def _weights_limit(desc_bytes: bytes, where: str) -> tuple[int, bool]:
    """(most weight bytes to read, whether that is the size the description records). A recorded size
    must lie within the global bound (:func:`_declared_weights_bytes`)."""
    try:
        desc = json.loads(desc_bytes.decode("utf-8"))
    except Exception:  # noqa: BLE001 - a broken description is reported by load_package
        desc = None
    declared = declared_weights_bytes(desc, where)
    return (declared, True) if declared is not None else (_max_weights_bytes(), False)


def _too_large(where: str, name: str, limit: int, declared: bool, size: int | None = None) -> ModelError:
    what = f"{size:,} bytes, " if size is not None else ""
    if name == DESCRIPTION_FILE:  # a fixed bound: a description is a few kB
        return ModelError(
            f"{where}: {name} is {what}larger than {limit:,} bytes, which no package description is (a damaged "
            "or crafted file). Re-create the package with `musetag package`"
        )
    why = f"larger than the {limit:,} bytes its description records" if declared else f"larger than {limit:,} bytes"
    return ModelError(
        f"{where}: {name} is {what}{why}; the package is damaged or crafted (a decompression bomb?). "
        "Re-create the package with `musetag package`"
        + ("" if declared else " or raise MUSETAG_MAX_MODEL_BYTES if the model really is that large")
    )


def _read_bounded(stream, limit: int, where: str, name: str, declared: bool, size: int | None = None) -> bytes:
    """Read at most ``limit`` bytes from a file-like object; refuse (without reading on) past that. ``size``:
    the member's size as its archive entry (or the file system) gives it; above ``limit`` it is refused
    before anything is read. The entry is not trusted either: the read itself stays bounded."""
    if size is not None and size > limit:
        raise _too_large(where, name, limit, declared, size)
    chunks, total = [], 0
    while True:
        chunk = stream.read(min(1 << 20, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise _too_large(where, name, limit, declared)
        chunks.append(chunk)


def read_members(path: Path) -> tuple[bytes, bytes | None]:
    """(description bytes, weights bytes or None) from a folder or an archive.

    Reads are bounded: the description to :data:`MAX_DESCRIPTION_BYTES`, the weights to the size the
    description records (or :data:`MAX_WEIGHTS_BYTES`), streamed, so a crafted archive whose member
    inflates to gigabytes is refused after reading one megabyte past the limit."""
    where = f"model package {path}"
    if path.is_dir():
        desc_path = path / DESCRIPTION_FILE
        if not desc_path.is_file():
            hint = (
                " It looks like a training run: package it first with `musetag package RUN_DIR --out MODEL`."
                if (path / "checkpoints").is_dir()
                else ""
            )
            raise ModelError(f"{path} is not a model package: {DESCRIPTION_FILE} is missing.{hint}")
        with open(desc_path, "rb") as f:
            desc = _read_bounded(f, MAX_DESCRIPTION_BYTES, where, DESCRIPTION_FILE, False, os.fstat(f.fileno()).st_size)
        weights_path = path / WEIGHTS_FILE
        if not weights_path.is_file():
            return desc, None
        limit, declared = _weights_limit(desc, where)
        with open(weights_path, "rb") as f:
            return desc, _read_bounded(f, limit, where, WEIGHTS_FILE, declared, os.fstat(f.fileno()).st_size)
    if not path.exists():
        import difflib

        from musetag.inference.catalogue import catalogue

        close = difflib.get_close_matches(str(path), list(catalogue()), n=3, cutoff=0.75)
        raise ModelError(f"model package {path} does not exist"
                         + (f" (did you mean the pretrained {', '.join(close)}?)" if close else "")
                         + "; create one with `musetag package RUN_DIR --out MODEL` (pretrained names: `musetag models "
                         "--pretrained`)")
    if not path.is_file():
        raise ModelError(f"{path} is neither a package folder nor a regular archive file; pass the folder written by `musetag package`")
    opened: dict[str, Any] = {}  # member base name -> zero-argument opener of a stream
    sizes: dict[str, int] = {}  # member base name -> its size as the archive entry gives it
    try:
        if zipfile.is_zipfile(path):
            archive = zipfile.ZipFile(path)
            for info in archive.infolist():
                base = info.filename.rstrip("/").split("/")[-1]
                if base in (DESCRIPTION_FILE, WEIGHTS_FILE) and info.filename.count("/") <= 1 and not info.is_dir():
                    opened[base] = (lambda info=info: archive.open(info))
                    sizes[base] = info.file_size  # zipfile never returns more than this (a CRC error instead)
        elif tarfile.is_tarfile(path):
            archive = tarfile.open(path)
            for info in archive.getmembers():
                base = info.name.rstrip("/").split("/")[-1]
                if info.isfile() and base in (DESCRIPTION_FILE, WEIGHTS_FILE) and info.name.count("/") <= 1:
                    opened[base] = (lambda info=info: archive.extractfile(info))
                    sizes[base] = info.size
        else:
            raise ModelError(
                f"{path} is neither a package folder nor a .zip/.tar archive of one; "
                "pass the folder written by `musetag package`"
            )
        with archive:
            if DESCRIPTION_FILE not in opened:
                raise ModelError(f"archive {path} holds no {DESCRIPTION_FILE}; it is not a musetag model package")
            if sizes[DESCRIPTION_FILE] > MAX_DESCRIPTION_BYTES:
                raise _too_large(where, DESCRIPTION_FILE, MAX_DESCRIPTION_BYTES, False, sizes[DESCRIPTION_FILE])
            with opened[DESCRIPTION_FILE]() as f:
                desc = _read_bounded(f, MAX_DESCRIPTION_BYTES, where, DESCRIPTION_FILE, False)
            if WEIGHTS_FILE not in opened:
                return desc, None
            limit, declared = _weights_limit(desc, where)
            if sizes[WEIGHTS_FILE] > limit:  # refused before opening the member
                raise _too_large(where, WEIGHTS_FILE, limit, declared, sizes[WEIGHTS_FILE])
            with opened[WEIGHTS_FILE]() as f:
                return desc, _read_bounded(f, limit, where, WEIGHTS_FILE, declared)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error, RuntimeError) as exc:
        raise ModelError(f"cannot read package archive {path}: {exc}; the archive is damaged, re-create it") from exc
