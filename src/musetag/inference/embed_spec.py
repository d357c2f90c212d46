"""The backbones of an embedding spec: ``a+b`` concatenates backbones, ``NAME:scores`` adds a backbone's
tag scores after its embedding (``preset = "embed:..."`` of a dataset, the backbones of a probe package),
and ``@key=value,...`` after a backbone sets its options.

Options are ``key=value`` items separated by ``,`` (or ``;``); the list options ``layers`` and ``pool``
take several values, and an item without ``=`` adds one more value to the option before it
(``NAME@layers=4,5,features,pool=mean,std`` and ``NAME@layers=4,5,features;pool=mean,std`` are the same).

``windows``: ``fit`` (what a dataset's ``embed:NAME`` gets, recorded as
``NAME@layers=-3,-2,-1,windows=fit`` for a catalogue backbone, ``PATH@windows=fit`` for a package) cuts consecutive windows overlapping by at most half their length
(:data:`FIT_OVERLAP`, segment key ``max_overlap``; a clip shorter than one window gets one, padded);
``upstream`` keeps the catalogue model's own rule (what tagging with the model itself uses). A
backbone written without the option (specs recorded before it existed) means ``upstream``.

``layers``: the backbone's layers whose statistics make the vector (tap names, or 1-based indices into
the backbone's taps, negative from the end: ``-1`` is ``features``, the pooled penultimate layer;
:mod:`musetag.models.taps`); ``pool``: the statistics over all frames of all windows, any of ``mean``,
``std``, ``max`` (``meanstd`` is ``mean,std``; default ``mean``). A backbone without ``layers`` (a spec
recorded before the option existed, or a package path) is the ``forward_features`` vector averaged over
windows; ``layers=features`` (or ``-1``) with ``pool=mean`` names that same vector explicitly (the same
numbers, read from the same per-file arrays), whatever the default of a new ``embed:NAME``
(:data:`DEFAULT_LAYERS`) is.

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
#: the statistics ``pool`` may name (:data:`musetag.models.taps.STATS`); ``meanstd`` is ``mean,std``
POOLS = ("mean", "std", "max")
POOL_ALIASES = {"meanstd": ("mean", "std"), "meanstdmax": ("mean", "std", "max")}
DEFAULT_POOL = ("mean",)
#: the layers a dataset's ``embed:NAME`` of a catalogue backbone records when it names none (written
#: ``NAME@layers=-3,-2,-1,windows=fit``): the mean of the last three taps, chosen on Emotify's train+validation
#: over the eight catalogue backbones (``bench/embed_layers.py``, ``bench/results/embed_layers.md``)
DEFAULT_LAYERS = "-3,-2,-1"
#: option -> allowed values (None: any layer name or index); list options take several values
OPTIONS: dict[str, tuple[str, ...] | None] = {"windows": WINDOWS, "layers": None, "pool": POOLS}
LIST_OPTIONS = ("layers", "pool")


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
    last = None
    for item in filter(None, (t.strip() for t in tail.replace(";", ",").split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq and last in LIST_OPTIONS:
            key, value = last, item
        elif key not in OPTIONS or not eq or not value:
            raise ConfigError(f"{where}: backbone {part!r}: unknown option {item!r}; write "
                              "NAME@windows=fit or NAME@layers=-2,-1,pool=mean,std (options: windows=fit|upstream, "
                              "layers=NAME|INDEX,..., pool=mean|std|max,...)")
        _check_value(part, key, value, where)
        if eq and key in options:  # the last one won silently: which window rule or layers did the user mean?
            hint = f" (its values follow one {key}=, e.g. {key}={'-2,-1' if key == 'layers' else 'mean,std'})" \
                if key in LIST_OPTIONS else ""
            raise ConfigError(f"{where}: backbone {part!r}: {key}= is given twice; give it once{hint}")
        options[key] = f"{options[key]},{value}" if not eq else value
        last = key
    if "pool" in options and "layers" not in options:
        raise ConfigError(f"{where}: backbone {part!r}: pool= goes with layers=; write NAME@layers=-1,pool=...")
    return head, options


def _check_value(part: str, key: str, value: str, where: str) -> None:
    allowed = OPTIONS[key]
    if key == "pool" and value in POOL_ALIASES:
        return
    if allowed is not None and value not in allowed:
        extra = f", {', '.join(POOL_ALIASES)}" if key == "pool" else ""
        raise ConfigError(f"{where}: backbone {part!r}: {key}={value!r} is not one of {', '.join(allowed)}{extra}")
    if key == "layers" and not value.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{where}: backbone {part!r}: layers value {value!r} is neither a layer name nor an index")


def part_layers(part: str) -> tuple[list[str], list[str]] | None:
    """``(layers, statistics)`` of one backbone of a spec, or None where it names no ``layers`` (the
    ``forward_features`` mean). ``meanstd`` is expanded; ``pool`` defaults to ``mean`` (``layers=all``: to
    every statistic, the whole stats array; ``layers=all,pool=mean`` is the mean of every tap)."""
    options = split_options(part)[1]
    if "layers" not in options:
        return None
    pool: list[str] = []
    # layers=all without pool: the whole stats array (every tap, every statistic); with pool: those statistics
    default = POOLS if options["layers"] == "all" else DEFAULT_POOL
    for p in options.get("pool", ",".join(default)).split(","):
        pool += list(POOL_ALIASES.get(p, (p,)))
    if len(set(pool)) != len(pool):
        raise ConfigError(f"backbone {part!r}: pool names a statistic twice")
    layers = options["layers"].split(",")
    if layers in (["features"], ["-1"]) and pool == ["mean"]:
        return None  # the forward_features mean: the same numbers as a backbone without layers, the same arrays
    return layers, pool


def join_options(part: str, options: dict[str, str]) -> str:
    """The backbone ``part`` with its options written after ``@`` (sorted; none: the part alone)."""
    return f"{part}@{','.join(f'{k}={v}' for k, v in sorted(options.items()))}" if options else part


def plain_part(part: str) -> str:
    """``part`` without ``layers``/``pool`` when they name the ``forward_features`` mean (:func:`part_layers`
    None): the key its per-file arrays have, whether written with ``layers=features`` or without layers."""
    if part_layers(part) is not None:
        return part
    name, options = split_options(part)
    return join_options(name, {k: v for k, v in options.items() if k not in LIST_OPTIONS})


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
