"""Tag files and folders into a results file: resumable, kill-safe, one row per file."""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Iterable

from musetag.exit_codes import exit_status
from musetag.tag.files import AUDIO_EXTENSIONS, collect_audio_files  # noqa: F401 - re-exported
from musetag.inference.tagger import Tagger
from musetag.tag.writers import ResultWriter

log = logging.getLogger(__name__)


@dataclass
class TagSummary:
    total: int = 0
    skipped: int = 0
    failed_before: int = 0  # of the skipped: files whose row in --out is an error from an earlier run
    ok: int = 0
    failed: int = 0
    warned: int = 0  # ok files whose row carries warnings (too short, silent, damaged)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        return exit_status(self.ok, self.failed, self.skipped, self.failed_before)

    def line(self, out, engine: str = "") -> str:
        """The one-line summary ``musetag tag`` prints (``engine``: named at its end, e.g. ``"Ray"``)."""
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        warned = f" ({self.warned} with warnings)" if self.warned else ""
        earlier = (f", {self.failed_before} of them failed earlier (their rows say why; --retry-errors tries them "
                   "again)") if self.failed_before else ""
        return (f"{out}: {self.ok} ok{warned}, {self.failed} failed, {self.skipped} already done{earlier} "
                f"({self.audio_seconds / 60:.1f} min of audio, {speed:.0f}x real time{', ' + engine if engine else ''})")


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
    ``shard`` (``"I/N"`` or a :class:`musetag.tag.shard.Shard`) tags only that part of the file list
    (see :mod:`musetag.tag.shard`; merge the parts with ``musetag merge``).
    """
    from tqdm.auto import tqdm

    if shard is None:
        files = collect_audio_files(paths, recursive=recursive)
    else:
        from musetag.tag.shard import collect_shard_files

        files = collect_shard_files(paths, shard, recursive=recursive)
    meta = {"model": {"name": tagger.package.model_name, "package": str(tagger.package.path), "sha256": tagger.package.sha256},
            "decision": tagger.decision}
    summary = TagSummary(total=len(files))
    start = time.perf_counter()
    with ResultWriter(out, tagger.tags, retry_errors=retry_errors, meta=meta,
                      segments=getattr(tagger, "keep_segments", False)) as writer:
        todo = [f for f in files if not writer.is_done(f)]
        summary.skipped = len(files) - len(todo)
        summary.failed_before = sum(1 for f in files if writer.failed_earlier(f))
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
