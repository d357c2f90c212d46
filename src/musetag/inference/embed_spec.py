"""The backbones of an embedding spec: ``a+b`` concatenates backbones, ``NAME:scores`` adds a backbone's
tag scores after its embedding (``preset = "embed:..."`` of a dataset, the backbones of a probe package),
and ``@key=value,...`` after a backbone sets its options.

The one option today is ``windows``: ``fit`` (what a dataset's ``embed:NAME`` gets, recorded as
``NAME@windows=fit``) cuts consecutive windows overlapping by at most half their length
(:data:`FIT_OVERLAP`, segment key ``max_overlap``; a clip shorter than one window gets one, padded);
``upstream`` keeps the catalogue model's own rule (what tagging with the model itself uses). A
backbone written without the option (specs recorded before it existed) means ``upstream``.

The ``:scores`` suffix and the options are read only when the whole name is neither a pretrained model nor
an existing path, so a package folder whose name ends in ``:scores`` or holds an ``@`` still works.
"""
from __future__ import annotations

from pathlib import Path

from musetag.errors import ConfigError

SCORES = "scores"
#: the window rules of an embedding: option ``windows``
WINDOWS = ("fit", "upstream")
#: what a new ``embed:NAME`` preset records
DEFAULT_WINDOWS = "fit"
#: ``windows=fit``: consecutive windows overlap by at most this fraction of their length
FIT_OVERLAP = 0.5
OPTIONS = {"windows": WINDOWS}


def split_spec(spec: str) -> list[str]:
    """The backbones of an ``a+b`` spec, in order."""
    return [p.strip() for p in str(spec).split("+")]


def _whole_name(part: str) -> bool:
    from musetag.inference.hub import is_pretrained_name

    return is_pretrained_name(part) or Path(part).expanduser().exists()


def split_options(part: str, where: str = "embedding spec") -> tuple[str, dict[str, str]]:
    """``(backbone without options, {option: value})`` of one backbone: ``NAME:scores@windows=fit`` ->
    ``("NAME:scores", {"windows": "fit"})``; an unknown option or value is a ConfigError naming the fix."""
    head, sep, tail = part.rpartition("@")
    if not sep or _whole_name(part):
        return part, {}
    options: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in tail.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if key not in OPTIONS or not eq:
            raise ConfigError(f"{where}: backbone {part!r}: unknown option {item!r}; write NAME@windows=fit "
                              f"(options: {', '.join(f'{k}=' + '|'.join(v) for k, v in OPTIONS.items())})")
        if value not in OPTIONS[key]:
            raise ConfigError(f"{where}: backbone {part!r}: {key}={value!r} is not one of {', '.join(OPTIONS[key])}")
        options[key] = value
    return head, options


def join_options(part: str, options: dict[str, str]) -> str:
    """The backbone ``part`` with its options written after ``@`` (sorted; none: the part alone)."""
    return f"{part}@{','.join(f'{k}={v}' for k, v in sorted(options.items()))}" if options else part


def part_windows(part: str) -> str:
    """The window rule of one backbone of a spec: ``fit`` or ``upstream`` (the default of a spec without it)."""
    return split_options(part)[1].get("windows", "upstream")


def parse_part(part: str) -> tuple[str, bool]:
    """``(backbone, with scores)`` of one backbone of a spec (options dropped): ``NAME:scores`` ->
    ``(NAME, True)``. A name that is itself a pretrained model or an existing path is taken whole."""
    part = split_options(part)[0]
    head, sep, suffix = part.rpartition(":")
    if sep and suffix == SCORES and not _whole_name(part):
        return head, True
    return part, False
