"""Tag files and folders into a results file: resumable, kill-safe, one row per file."""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from musetag.exit_codes import exit_status
from musetag.tag.tagger import Tagger
from musetag.tag.writers import ResultWriter

log = logging.getLogger(__name__)

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


@dataclass
class TagSummary:
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    warned: int = 0  # ok files whose row carries warnings (too short, silent, damaged)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        return exit_status(self.ok, self.failed, self.skipped)


def tag_files(
    tagger: Tagger,
    paths: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    recursive: bool = False,
    workers: int = 0,
    top_k: int = 5,
    retry_errors: bool = False,
    progress: bool = True,
    shard=None,
) -> TagSummary:
    """Tag every file under ``paths`` into ``out`` (.csv, .json or .jsonl).

    Files already in ``out`` are skipped (``retry_errors`` tags failed ones again); each result is
    written as soon as it is known, so a killed run loses at most the files in flight.
    ``shard`` (``"I/N"`` or a :class:`musetag.shard.Shard`) tags only that part of the file list
    (see :mod:`musetag.shard`; merge the parts with ``musetag merge``).
    """
    from tqdm.auto import tqdm

    if shard is None:
        files = collect_audio_files(paths, recursive=recursive)
    else:
        from musetag.shard import collect_shard_files

        files = collect_shard_files(paths, shard, recursive=recursive)
    meta = {"model": {"name": tagger.package.model_name, "package": str(tagger.package.path), "sha256": tagger.package.sha256}}
    summary = TagSummary(total=len(files))
    start = time.perf_counter()
    with ResultWriter(out, tagger.tags, retry_errors=retry_errors, meta=meta) as writer:
        todo = [f for f in files if not writer.is_done(f)]
        summary.skipped = len(files) - len(todo)
        if summary.skipped:
            log.info("%s: %d of %d files already done, skipping them", out, summary.skipped, len(files))
        bar = tqdm(total=len(todo), unit="file", disable=not progress, dynamic_ncols=True, file=sys.stderr)
        try:
            for result in tagger.tag_many(todo, workers=workers if todo else 0):
                writer.write(result.to_row(top_k))
                if result.ok:
                    summary.ok += 1
                    summary.audio_seconds += result.duration or 0.0
                    if result.warnings:
                        summary.warned += 1
                        bar.write(f"warning: {result.path}: {'; '.join(result.warnings)}", file=sys.stderr)
                else:
                    summary.failed += 1
                    bar.write(f"error: {result.status}", file=sys.stderr)
                bar.update(1)
                bar.set_postfix(ok=summary.ok, failed=summary.failed, refresh=False)
        finally:
            bar.close()
    summary.wall_seconds = time.perf_counter() - start
    return summary
