"""The per-tag decision thresholds an upstream project published beside its weights, read strictly.

The MediaEval organisers' layout (``results/mediaeval/baseline_vggish_thresholds.txt`` of
MTG/mtg-jamendo-dataset): one line per output tag, in the model's output order,
``TAG<TAB>THRESHOLD`` with the tag as upstream names it (``mood/theme---happy``). The published
decisions are ``prediction > threshold`` (strictly greater: :data:`DECISION_RULE`).

A thresholds file decides which tags a song gets, so nothing is guessed: the tags must be exactly the
model's, in its order, one line each, every value a finite number in [0, 1]. Anything else is refused
with the file, the line and what was expected. This module reads files; it never downloads.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from musetag.errors import ModelError

#: how a score and its published threshold make a decision (the organisers' ``predictions > thresholds``)
DECISION_RULE = "greater"


def read_published_thresholds(path: str | os.PathLike, upstream_tags: Sequence[str], *,
                              fix: str = "") -> list[float]:
    """The thresholds of ``path`` in ``upstream_tags`` order; :class:`ModelError` naming the file and the
    line on anything unexpected. ``fix``: what the user should do about a bad file (appended to errors)."""
    path = Path(path)
    advice = f"; {fix}" if fix else ""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text ({exc}), so not a thresholds file{advice}") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the thresholds file ({exc.strerror or exc}){advice}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    expected = list(upstream_tags)
    if len(lines) != len(expected):
        raise ModelError(f"{path}: {len(lines)} lines where the model has {len(expected)} tags "
                         f"(one 'TAG<TAB>THRESHOLD' line per tag){advice}")
    values = []
    for number, (line, tag) in enumerate(zip(lines, expected), 1):
        where = f"{path}:{number}"
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 2:
            raise ModelError(f"{where}: expected 'TAG<TAB>THRESHOLD', found {line[:80]!r}{advice}")
        name, raw = fields
        if name != tag:
            raise ModelError(f"{where}: tag {name[:80]!r} where the model's output {number} is {tag!r} "
                             f"(the file must list the model's tags in its output order){advice}")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ModelError(f"{where}: threshold {raw[:40]!r} for {tag!r} is not a number in [0, 1]{advice}")
        values.append(value)
    return values
