"""Exit statuses of the batch commands (``musetag tag``, ``embed``, ``features``, ``prepare``, ``score`` of several
runs): scripts and schedulers tell a complete run from a partial one and from one that did nothing.

1 stays Python's "crashed with a traceback", 2 is musetag's "invalid argument, model, input or
--out" (``musetag.cli``), 130 "interrupted".
"""
from __future__ import annotations

EXIT_OK = 0  # every file tagged (or already in the output)
EXIT_SOME_FAILED = 3  # some files failed (their rows say why), the others were tagged
EXIT_NOTHING_DONE = 4  # nothing tagged in this run: every file failed, or no audio file was found
EXIT_STATUS_HELP = (
    "Exit status: 0 every file was tagged (in this run or an earlier one into the same --out); 3 some files "
    "failed (their rows say why; an error row kept from an earlier run counts until --retry-errors tags the "
    "file), the others were tagged; 4 nothing was tagged: every file failed, or no audio file was found; "
    "2 invalid arguments, model or --out; 130 interrupted."
)


def exit_status(ok: int, failed: int, skipped: int = 0, failed_before: int = 0) -> int:
    """:data:`EXIT_OK`, :data:`EXIT_SOME_FAILED` or :data:`EXIT_NOTHING_DONE` for a run that
    tagged ``ok`` files, failed ``failed`` and found ``skipped`` already done, ``failed_before`` of which
    are error rows kept from an earlier run (still failed files of that output)."""
    tagged = ok + skipped - failed_before  # the files the output holds a result for
    failed += failed_before
    if failed == 0 and tagged:
        return EXIT_OK
    return EXIT_SOME_FAILED if tagged else EXIT_NOTHING_DONE


