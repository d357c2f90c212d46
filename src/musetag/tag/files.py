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
    permission, a named pipe, device or socket named like audio) are kept so that they get an error
    row rather than vanishing. A subfolder named like audio (``live.mp3/``) is searched with
    ``recursive``; without it a warning names it."""
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
            named = [f for f in walker if f.suffix.lower() in AUDIO_EXTENSIONS and not f.name.startswith(".")]
            # anything but a folder gets a row: a regular file, a dangling link, a pipe, device or socket (the
            # last three an error row); a folder named like audio is walked by rglob, or named in a warning
            found = sorted((f for f in named if not f.is_dir()), key=lambda f: str(f))
            folders = sorted(str(f) for f in named if f.is_dir())
            if folders and not recursive:
                log.warning("%s: not tagged, %s named like an audio file: %s (pass --recursive to tag the files "
                            "inside)", p, "a folder" if len(folders) == 1 else f"{len(folders)} folders",
                            ", ".join(folders))
            if not found:
                log.warning("%s: no audio files%s", p, "" if recursive else " (pass --recursive for subfolders)")
            for f in found:
                add(str(f))
        else:
            add(str(p))
    return out
