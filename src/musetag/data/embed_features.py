"""Track embeddings of pretrained models as cached features (``preset = "embed:MODEL"``).

A dataset TOML with ``preset = "embed:jamendo-musicnn"`` (a pretrained catalogue name, ``musetag
models --pretrained``, or a model package path relative to the TOML) makes ``musetag prepare`` store
one vector per track, computed by :class:`musetag.inference.embed.Embedder`, the same numbers ``musetag
embed`` writes for the recorded spec. A catalogue backbone naming no ``layers=`` gets the dataset default
``@layers=-3,-2,-1`` (the mean over all frames of all windows of its last three taps,
:data:`~musetag.inference.embed_spec.DEFAULT_LAYERS`, :func:`dataset_embedding_config`), written into the
resolved preset and so into the cache key; ``NAME@layers=features`` is the pooled penultimate layer averaged
over the windows (what ``embed:NAME`` was before, and what ``musetag embed NAME`` writes). A package path and a
``NAME:scores`` backbone keep that penultimate mean.
``embed:a+b`` concatenates the vectors of several backbones (in that order). Each backbone is recorded
with its window rule (``NAME@windows=fit`` unless the preset says ``@windows=upstream``,
:mod:`musetag.inference.embed_spec`): consecutive windows overlap by at most half their length. A backbone written
``NAME:scores`` (``embed:jamendo-musicnn:scores``, ``embed:a:scores+b``) adds its tag scores after its
embedding, the vector ``musetag embed --with-scores`` writes (:mod:`musetag.inference.embed_scores`); the
suffix is read only when the whole name is neither a pretrained model nor an existing path, so a
package folder whose name ends in ``:scores`` still works. Each track's array is
float32 ``(dim, 1)`` (one "frame"), so the cache's per-band statistics are per-dimension statistics of
the training split (``stats.json``: ``band_mean``/``band_std``). Probes (:mod:`musetag.models.probe`)
train on these caches; ``musetag package`` joins the backbone and the probe into one package.

Every backbone of a spec also keeps its own per-file array in the array store, in the folder a cache of
``embed:PART`` alone would use (:func:`part_arrays_dir`): ``prepare`` of ``embed:a+b`` after ``embed:a``
runs only ``b``, and later ``embed:b`` or ``embed:b+a`` run nothing.

The data stage asks the inference layer for the vectors (:func:`musetag.inference.embed.load_embedder`,
imported where used so that reading a cache does not load torch); it never reaches into ``tag/``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from musetag.errors import ConfigError
from musetag.inference.embed_spec import (DEFAULT_LAYERS, DEFAULT_WINDOWS, SCORES, join_options, parse_part, plain_part,
                                          split_options, split_spec)

PREFIX = "embed:"


def is_embed_preset(preset: Any) -> bool:
    return isinstance(preset, str) and preset.startswith(PREFIX)


def _resolve(part: str, base_dir: Path | None) -> str | None:
    from musetag.inference.hub import is_pretrained_name

    if is_pretrained_name(part):
        return part
    path = Path(part).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path.resolve()) if path.exists() else None


def _check_part(part: str, where: str, base_dir: Path | None, default_layers: str | None = None) -> str:
    """One backbone of a preset resolved, with its options (``windows`` always written: the default ``fit``;
    ``layers`` written as ``default_layers`` for a catalogue backbone naming none, without ``:scores``)."""
    from musetag.inference.hub import is_pretrained_name

    whole = _resolve(part, base_dir) if part else None
    if whole is not None and not is_pretrained_name(part):  # a package path holding an "@"
        return join_options(whole, {"windows": DEFAULT_WINDOWS})
    if "@" in part and part.endswith(f":{SCORES}"):  # NAME@options:scores: the options would swallow :scores
        head, _, tail = part[:-len(SCORES) - 1].partition("@")
        fix = (f"{head}@{tail} (the layers' statistics) or {head}:{SCORES} (the penultimate mean and the tag scores)"
               if "layers=" in tail else f"{head}:{SCORES}@{tail}")
        raise ConfigError(f"{where}: backbone {part!r}: :{SCORES} goes before the options; write {fix}")
    name, options = split_options(part, where)
    _check_layers(part, name, options, where)
    defaults = {"windows": DEFAULT_WINDOWS}
    if default_layers and "layers" not in options and is_pretrained_name(name):
        defaults["layers"] = default_layers
    return join_options(_check_backbone(name, where, base_dir), {**defaults, **options})


def _check_layers(part: str, name: str, options: dict[str, str], where: str) -> None:
    """What the written options alone can refuse, before any audio is read: ``layers=`` with ``:scores``
    (:class:`~musetag.inference.embed.Embedder` refuses it), a statistic named twice."""
    from musetag.inference.embed_spec import part_layers

    if "layers" in options and parse_part(name)[1]:
        raise ConfigError(f"{where}: backbone {part!r}: layers= does not combine with :{SCORES}; write "
                          f"{parse_part(name)[0]}@layers={options['layers']} (the layers' statistics) or "
                          f"{name} (the penultimate mean and the tag scores)")
    try:
        part_layers(part)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_backbone(part: str, where: str, base_dir: Path | None) -> str:
    from musetag.inference.hub import catalogue

    if not part:
        raise ConfigError(f"{where}: preset = \"embed:...\" names an empty backbone; write embed:NAME or embed:A+B")
    whole = _resolve(part, base_dir)
    if whole is not None:
        return whole
    head, sep, suffix = part.rpartition(":")
    if sep and head:
        resolved = _resolve(head, base_dir)
        if resolved is not None and suffix == SCORES:
            return f"{resolved}:{SCORES}"
        if resolved is not None:
            raise ConfigError(
                f"{where}: preset embed:{part}: unknown backbone suffix ':{suffix}'; the only one is ':{SCORES}' "
                f"(its tag scores after its embedding): write embed:{head}:{SCORES}, or embed:{head} for the embedding alone"
            )
    path = Path(part).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    raise ConfigError(
        f"{where}: preset embed:{part}: {part!r} is neither a pretrained model ({', '.join(sorted(catalogue()))}) "
        f"nor an existing model package ({path}); fix the name or the path"
    )


def embedding_feature_config(spec: str, where: str = "dataset config", *, base_dir: str | os.PathLike | None = None,
                             default_layers: str | None = None):
    """The :class:`~musetag.features.FeatureConfig` of an ``embed:`` preset (``spec`` without the prefix);
    package paths are made absolute (relative ones against ``base_dir``, the TOML's folder). A catalogue
    backbone naming no ``layers`` (and without ``:scores``) is recorded with ``layers=default_layers``
    (None: the ``forward_features`` mean, a part without ``layers``), so the resolved preset, hence the
    cache key, says which vector it is. A dataset's preset: :func:`dataset_embedding_config`."""
    from musetag.features import FeatureConfig

    base = Path(base_dir) if base_dir is not None else None
    parts = [_check_part(p, where, base, default_layers) for p in split_spec(spec)]
    joined = "+".join(parts)
    return FeatureConfig(kind="embedding", embed=joined, name=f"{PREFIX}{joined}")


def dataset_embedding_config(spec: str, where: str = "dataset config", *, base_dir: str | os.PathLike | None = None):
    """The FeatureConfig of a dataset's ``preset = "embed:SPEC"`` (``prepare``, ``train``, ``probe-auto``): a
    catalogue backbone without ``layers=`` gets :data:`~musetag.inference.embed_spec.DEFAULT_LAYERS` (the mean
    of its last three taps, ``bench/results/embed_layers.md``); ``NAME@layers=features`` keeps the pooled
    penultimate layer alone (what ``musetag embed NAME`` writes)."""
    return embedding_feature_config(spec, where, base_dir=base_dir, default_layers=DEFAULT_LAYERS)


def load_backbones(spec: str, *, batch_size: int = 32, device: str = "cpu") -> list:
    """One :class:`~musetag.inference.embed.Embedder` per backbone of ``spec`` (``NAME:scores``: with scores)."""
    return [load_backbone(part, batch_size=batch_size, device=device) for part in split_spec(spec)]


def load_backbone(part: str, *, batch_size: int = 32, device: str = "cpu"):
    """The :class:`~musetag.inference.embed.Embedder` of one backbone of a spec (``NAME`` or ``NAME:scores``)."""
    from musetag.inference.embed import load_embedder

    from musetag.inference.embed_spec import part_windows

    from musetag.inference.embed_spec import part_layers

    name, scores = parse_part(part)
    chosen = part_layers(part)
    layers = {} if chosen is None else {"layers": "all" if chosen[0] == ["all"] else chosen[0], "pool": chosen[1]}
    return load_embedder(name, batch_size=batch_size, device=device, scores=scores, windows=part_windows(part), **layers)


def embed_track(embedders: list, audio: str | os.PathLike) -> np.ndarray:
    """The concatenated embeddings of one audio file, float32 ``(dim, 1)``."""
    vectors = [np.asarray(e.embed(str(audio)), dtype=np.float32).reshape(-1) for e in embedders]
    return np.concatenate(vectors)[:, None]


def part_arrays_dir(store: str | os.PathLike, features: dict[str, Any], part: str) -> Path:
    """The array-store folder of one backbone ``part`` of the embedding features ``features`` (a
    FeatureConfig's dict): the very folder a cache of ``embed:PART`` alone keeps its arrays in, so a
    composite preset (``embed:a+b``) finds what ``embed:a`` computed, and ``embed:a`` what ``a+b`` did."""
    from musetag.data.cache_arrays import CACHE_VERSION
    from musetag.data.store import arrays_dir, settings_key
    from musetag.features import FeatureConfig

    config = FeatureConfig.from_dict({**features, "embed": part, "name": f"{PREFIX}{part}"})
    return arrays_dir(Path(store), settings_key(config), "float32", CACHE_VERSION)


#: the layout file of a folder of stats arrays (or of a cache's concatenated vectors)
LAYOUT = "layout.json"


def stats_part(part: str) -> str:
    """The spec of one backbone's whole stats array (``NAME@layers=all,windows=...``): the key its per-file
    arrays are stored under, shared by every choice of layers and statistics of that backbone."""
    from musetag.inference.embed_spec import split_options

    name, options = split_options(part)
    return join_options(name, {"layers": "all", "windows": options.get("windows", "upstream")})


def _save(path: Path, vector: np.ndarray) -> None:
    from musetag.data.cache_arrays import save_array_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    save_array_atomically(path, vector[:, None])


def _read_layout(path: Path) -> list[dict[str, Any]]:
    import json

    try:
        return json.loads(path.read_text())["layout"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: unreadable vector layout ({exc}); delete it and the arrays beside it, then "
                          "run `musetag prepare` again") from None


def _write_layout(path: Path, layout: list[dict[str, Any]]) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"layout": layout}, indent=1))
    os.replace(tmp, path)  # atomic: a reader never sees half a layout


def plain_layout(part: str, width: int) -> list[dict[str, Any]]:
    """The layout rows of a backbone without ``layers=`` whose vector is ``width`` long: its pooled
    ``forward_features`` mean, then, for ``NAME:scores``, its tag scores (one column per tag of the package,
    ``stat`` the package's aggregation over windows)."""
    name, scores = parse_part(part)
    if not scores:
        return [{"layer": "features", "stat": "mean", "length": width}]
    from musetag.inference.loading import load_model

    package = load_model(name, load_weights=False)
    n = len(package.tags)
    return [{"layer": "features", "stat": "mean", "length": width - n},
            {"layer": SCORES, "stat": str(package.segment.get("aggregation", "mean")), "length": n}]


def vector_layout(spec: str, layouts: dict[str, list[dict[str, Any]]], widths: dict[str, int]) -> list[dict[str, Any]]:
    """The layout of a cache's concatenated vector: ``[{"backbone", "layer", "stat", "offset", "length"}]``;
    a backbone without ``layers=`` is its ``features`` mean, and its ``scores`` after it (:func:`plain_layout`)."""
    rows, offset = [], 0
    for part in split_spec(spec):
        for r in layouts.get(part) or plain_layout(part, widths[part]):
            rows.append({"backbone": part, "layer": r["layer"], "stat": r["stat"], "offset": offset, "length": r["length"]})
            offset += r["length"]
    return rows


def cache_layout(cache_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The vector layout of a prepared ``embed:`` cache (:func:`vector_layout`), from the ``layout.json``
    beside its arrays; a ConfigError naming the fix when the cache has none."""
    import json

    cache_dir = Path(cache_dir)
    try:
        arrays = cache_dir / json.loads((cache_dir / "cache.json").read_text())["arrays"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{cache_dir}: not a prepared cache ({exc}); run `musetag prepare` first") from None
    if not (arrays / LAYOUT).is_file():
        raise ConfigError(f"{arrays / LAYOUT}: this embedding cache records no layout (prepared by an older musetag, "
                          "or not an embed: preset); prepare it again with --overwrite")
    return _read_layout(arrays / LAYOUT)


class _Backbones:
    """The backbones of one cache's spec, each loaded the first time a track needs it computed, and
    each backbone's per-file arrays in the store (read when present, written when computed)."""

    def __init__(self, features: dict[str, Any]) -> None:
        self.features = features
        self.parts = split_spec(features["embed"])
        self.loaded: dict[str, Any] = {}
        #: per backbone with layers=: the layout of its chosen vector (filled as vectors are made)
        self.layouts: dict[str, list[dict[str, Any]]] = {}

    def vector(self, part: str, job: dict[str, Any]) -> np.ndarray:
        """One backbone's vector of one job's file: read from the store, else computed (and stored); a
        backbone with ``layers=`` is those statistics taken out of its stats array (:meth:`stats`)."""
        from musetag.data.store import audio_key
        from musetag.inference.embed_spec import part_layers

        chosen = part_layers(part)
        if chosen is not None:
            return self._chosen(part, job, chosen)
        part = plain_part(part)  # NAME@layers=features,pool=mean: the arrays of NAME
        final = Path(job["out"])
        path = None
        if job.get("store"):
            path = part_arrays_dir(job["store"], self.features, part) / audio_key(job["audio"])
            if path != final and path.is_file():
                return np.load(path).reshape(-1).astype(np.float32, copy=False)
        vector = self._compute(part, job)
        if path is not None and path != final:
            _save(path, vector)
            # the folder is the cache of embed:PART alone, which then finds every array there: its layout too
            if not (path.parent / LAYOUT).is_file():
                _write_layout(path.parent / LAYOUT, vector_layout(part, {}, {part: len(vector)}))
        return vector

    def _compute(self, part: str, job: dict[str, Any]) -> np.ndarray:
        if part not in self.loaded:
            self.loaded[part] = load_backbone(part)
        vector = np.asarray(self.loaded[part].embed(str(job["audio"])), dtype=np.float32).reshape(-1)
        if not np.isfinite(vector).all():
            raise ValueError(f"{job['audio']}: the embedding of {part} has NaN or infinite values")
        return vector

    def _chosen(self, part: str, job: dict[str, Any], chosen: tuple[list[str], list[str]]) -> np.ndarray:
        from musetag.models.taps import select, selection_layout, whole_or_layers

        stats, layout = self.stats(part, job)
        layers = whole_or_layers(chosen[0], chosen[1], list(dict.fromkeys(r["layer"] for r in layout)), part)
        if layers is None:  # every tap, every statistic: the stats array as it is
            self.layouts[part] = layout
            return stats
        vector = select(stats, layout, layers, chosen[1])
        self.layouts[part] = selection_layout(layout, layers, chosen[1])
        return vector

    def stats(self, part: str, job: dict[str, Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The stats array of ``part``'s backbone for one file (every tap: mean, std, max) and its layout:
        one per backbone, window rule and file in the store (:func:`stats_part`), whatever layers are chosen."""
        from musetag.data.store import audio_key

        whole = stats_part(part)
        folder = part_arrays_dir(job["store"], self.features, whole) if job.get("store") else None
        path = folder / audio_key(job["audio"]) if folder is not None else None
        if path is not None and path.is_file() and (folder / LAYOUT).is_file():
            return np.load(path).reshape(-1).astype(np.float32, copy=False), _read_layout(folder / LAYOUT)
        vector = self._compute(whole, job)
        layout = self.loaded[whole].layout
        if path is not None:
            _save(path, vector)
            if not (folder / LAYOUT).is_file():
                _write_layout(folder / LAYOUT, layout)
        return vector, layout

    def track(self, job: dict[str, Any]) -> np.ndarray:
        """The concatenated vectors of one job's audio file, float32 ``(dim, 1)``; the first one also
        writes the vector's layout (:func:`vector_layout`) beside the arrays."""
        vectors = [self.vector(part, job) for part in self.parts]
        layout_path = Path(job["out"]).parent / LAYOUT
        if not layout_path.is_file():
            widths = {p: len(v) for p, v in zip(self.parts, vectors)}
            _write_layout(layout_path, vector_layout(self.features["embed"], self.layouts, widths))
        return np.concatenate(vectors)[:, None]


def run_embed_jobs(jobs: list[dict[str, Any]], handle: Callable[[dict[str, Any]], None], *, progress: bool) -> None:
    """Compute and store the cache jobs of an ``embed:`` cache in this process; ``handle`` gets the same
    results as for audio features. Each backbone's vector of a file is its own array in the store
    (:func:`part_arrays_dir`): a backbone already computed for that file (by this preset or another one
    naming it) is read, never recomputed, and a backbone is loaded only when some file needs it (torch
    threads as for ``musetag embed``). A failing track is reported (``{"id", "error"}``) and never stops the others;
    a :class:`~musetag.errors.ConfigError` (the preset names a layer the backbone lacks) stops the run at once,
    the tracks done so far kept."""
    if not jobs:
        return
    from tqdm import tqdm

    from musetag.data.cache_arrays import _summary, save_array_atomically

    backbones = _Backbones(jobs[0]["features"])
    bar = tqdm(total=len(jobs), desc="prepare (embed)", unit="track", disable=not progress, dynamic_ncols=True)
    try:
        for job in jobs:
            try:
                if job["audio"] is None or not Path(job["audio"]).is_file():
                    raise FileNotFoundError(f"audio file {job['audio']} not found")
                array = backbones.track(job)
                final = Path(job["out"])
                save_array_atomically(final, array)
                handle({"id": job["id"], "file": job.get("file", f"features/{final.name}"), **_summary(array, "embedding")})
            except ConfigError:  # the preset itself (an unknown layer): every track would fail the same way
                raise
            except Exception as exc:  # noqa: BLE001 - reported in failures.csv, the other tracks continue
                handle({"id": job["id"], "error": f"{type(exc).__name__}: {exc}".replace("\n", " ")})
            bar.update(1)
    finally:
        bar.close()
