"""The backbones of an embedding spec: ``a+b`` concatenates backbones, ``NAME:scores`` adds a backbone's
tag scores after its embedding (``preset = "embed:..."`` of a dataset, the backbones of a probe package).

The ``:scores`` suffix is read only when the whole name is neither a pretrained model nor an existing path,
so a package folder whose name ends in ``:scores`` still works.
"""
from __future__ import annotations

from pathlib import Path

SCORES = "scores"


def split_spec(spec: str) -> list[str]:
    """The backbones of an ``a+b`` spec, in order."""
    return [p.strip() for p in str(spec).split("+")]


def parse_part(part: str) -> tuple[str, bool]:
    """``(backbone, with scores)`` of one backbone of a spec: ``NAME:scores`` -> ``(NAME, True)``.
    A name that is itself a pretrained model or an existing path is taken whole."""
    from musetag.inference.hub import is_pretrained_name

    head, sep, suffix = part.rpartition(":")
    if sep and suffix == SCORES and not is_pretrained_name(part) and not Path(part).expanduser().exists():
        return head, True
    return part, False
