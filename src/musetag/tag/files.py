"""The audio files a tagging run lists: explicit files as given, then each folder's audio files.

A leaf module (no torch, no tagger) shared by :mod:`musetag.tag.batch` (``musetag tag``),
:mod:`musetag.tag.shard` (``--shard I/N``) and :mod:`musetag.inference.embed` (``musetag embed``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

log = logging.getLogger("musetag.tag.batch")  # the messages keep the name they were logged under

__all__ = ["AUDIO_EXTENSIONS", "collect_audio_files"]

#: extensions picked up inside folders (files named explicitly are always tagged)
AUDIO_EXTENSIONS = frozenset(
    ".mp3 .wav .wave .flac .ogg .oga .opus .aif .aiff .aifc .au .snd .caf .w64 .m4a .aac .wma".split()
)


def collect_audio_files(paths: Iterable[str | os.PathLike], *, recursive: bool = False) -> list[str]:
    """Files to tag, in a stable order: explicit files as given, then each folder's audio files
    (by extension; subfolders only with ``recursive``), sorted. Missing paths, and entries of a
    folder that cannot be read (a symbolic link whose target is gone or loops, a file without read
    permission) are kept so that they get an error row rather than vanishing."""
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for path in paths:
        p = Path(path)
        if p.is_dir():
            walker = p.rglob("*") if recursive else p.iterdir()
            found = sorted(
                (f for f in walker if f.suffix.lower() in AUDIO_EXTENSIONS and not f.name.startswith(".")
                 and (f.is_file() or _dangling_link(f))),
                key=lambda f: str(f),
            )
            if not found:
                log.warning("%s: no audio files%s", p, "" if recursive else " (pass --recursive for subfolders)")
            for f in found:
                add(str(f))
        else:
            add(str(p))
    return out


def _dangling_link(path: Path) -> bool:
    """A symbolic link that leads nowhere (missing target, or a loop): an unreadable file to report."""
    return path.is_symlink() and not path.exists()
