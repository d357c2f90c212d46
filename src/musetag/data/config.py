"""Dataset configuration: one TOML file names the reader, its paths, the feature preset and the
task, so ``musetag prepare``, ``train`` and ``evaluate`` all take the same ``--data FILE``.

Example (paths are relative to the TOML file)::

    name = "gtzan3"
    reader = "gtzan"            # jamendo | fma | gtzan | csv
    task = "multiclass"         # multilabel | multiclass | regression
    # targets = ["valence", "arousal"]   # regression: numeric columns of the CSV manifest
    preset = "fusion64"         # a musetag.features preset, or "embed:MODEL" (pretrained track embeddings)
    # tags = "tags.txt"         # optional fixed vocabulary, one tag per line
    # cache = "cache/gtzan3"    # optional cache folder (default: .musetag-cache/<name>-<hash> beside this file)
    # store = "cache/arrays"    # optional array store shared with other datasets over the same audio

    [paths]                     # the reader's inputs
    root = "../shared/data/gtzan3"

    [options]                   # the reader's options (see each reader's docstring)

    [split]                     # only used when the reader gives no split
    seed = 0
    fractions = [0.8, 0.1, 0.1]

    [features]                  # optional overrides of the preset (FeatureConfig field names)
    # n_mels = 128
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musetag.errors import ConfigError

TASKS = ("multilabel", "multiclass", "regression")
_TOP_KEYS = {"name", "reader", "task", "preset", "tags", "cache", "store", "paths", "options", "split", "features",
             "targets"}
_SPLIT_KEYS = {"seed", "fractions", "stratify", "group_disjoint"}


@dataclass
class DatasetConfig:
    """A resolved dataset config. ``paths`` are absolute; ``source`` is the TOML file (if any)."""

    reader: str
    task: str = "multilabel"
    preset: str | None = None
    name: str | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    split_seed: int = 0
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    stratify: bool = True
    group_disjoint: bool = True
    tags_file: Path | None = None
    cache_dir: Path | None = None
    store_dir: Path | None = None
    features: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    targets: tuple[str, ...] = ()  # regression: the numeric manifest columns, in output order

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source else ""
        if self.task not in TASKS:
            raise ConfigError(f"{where}task = {self.task!r}; use one of {', '.join(TASKS)}")
        self.targets = _check_targets(self.task, self.targets, self.reader, where)
        from musetag.data.datasets import READERS

        if self.reader not in READERS:
            raise ConfigError(f"{where}reader = {self.reader!r}; use one of {', '.join(sorted(READERS))}")
        fr = tuple(float(x) for x in self.split_fractions)
        if len(fr) != 3 or any(x < 0 for x in fr) or abs(sum(fr) - 1.0) > 1e-6:
            raise ConfigError(
                f"{where}[split] fractions = {list(self.split_fractions)}; give three non-negative "
                "numbers (train, validation, test) that sum to 1, e.g. [0.8, 0.1, 0.1]"
            )
        self.split_fractions = fr  # type: ignore[assignment]
        READERS[self.reader].validate(self)
        if self.name is None:
            self.name = self.source.stem if self.source else self.reader

    @property
    def where(self) -> str:
        return str(self.source) if self.source else f"dataset config (reader {self.reader})"

    def feature_config(self):
        """The preset's FeatureConfig with the ``[features]`` overrides applied."""
        from musetag.features import FeatureConfig, get_preset

        from musetag.data.embed_features import dataset_embedding_config, is_embed_preset

        if is_embed_preset(self.preset):
            if self.features:
                raise ConfigError(f"{self.where}: [features] overrides do not apply to preset = {self.preset!r}; "
                                  "remove the [features] table")
            return dataset_embedding_config(self.preset[len("embed:"):], self.where,
                                            base_dir=self.source.parent if self.source else None)
        if self.preset is None and not self.features:
            raise ConfigError(f"{self.where}: no feature preset; add e.g. preset = \"jamendo96\"")
        try:
            base = get_preset(self.preset).to_dict() if self.preset else {}
        except ConfigError as exc:  # the preset's name came from the dataset TOML: say which
            raise ConfigError(f"{self.where}: preset = {self.preset!r}: {exc}") from None
        unknown = set(self.features) - set(base or FeatureConfig().to_dict())
        if unknown:
            raise ConfigError(
                f"{self.where}: unknown [features] key(s) {sorted(unknown)}; "
                f"valid keys: {', '.join(sorted(base or FeatureConfig().to_dict()))}"
            )
        base.update(self.features)
        return FeatureConfig.from_dict(base)

    def to_dict(self) -> dict[str, Any]:
        """Plain, TOML/JSON-serialisable form (absolute paths)."""
        out: dict[str, Any] = {"name": self.name, "reader": self.reader, "task": self.task}
        if self.targets:
            out["targets"] = list(self.targets)
        if self.preset:
            out["preset"] = self.preset
        if self.tags_file:
            out["tags"] = str(self.tags_file)
        if self.cache_dir:
            out["cache"] = str(self.cache_dir)
        if self.store_dir:
            out["store"] = str(self.store_dir)
        out["paths"] = {k: str(v) for k, v in self.paths.items()}
        out["options"] = dict(self.options)
        out["split"] = {
            "seed": self.split_seed, "fractions": list(self.split_fractions),
            "stratify": self.stratify, "group_disjoint": self.group_disjoint,
        }
        if self.features:
            out["features"] = dict(self.features)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base_dir: str | Path = ".", source: Path | None = None) -> "DatasetConfig":
        where = str(source) if source else "dataset config"
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {', '.join(sorted(_TOP_KEYS))}")
        if "reader" not in data:
            raise ConfigError(f"{where}: missing reader = \"jamendo\" | \"fma\" | \"gtzan\" | \"csv\"")
        base = Path(base_dir)

        def resolve(value: Any, key: str) -> Path:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}: {key} must be a path string, got {value!r}")
            path = Path(value).expanduser()
            return (path if path.is_absolute() else base / path).resolve()

        paths_raw = data.get("paths", {})
        if not isinstance(paths_raw, dict):
            raise ConfigError(f"{where}: [paths] must be a table of name = \"path\"")
        split = data.get("split", {})
        if not isinstance(split, dict) or set(split) - _SPLIT_KEYS:
            raise ConfigError(f"{where}: [split] accepts only {', '.join(sorted(_SPLIT_KEYS))}")
        options = data.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: [options] must be a table")
        features = data.get("features", {})
        if not isinstance(features, dict):
            raise ConfigError(f"{where}: [features] must be a table")
        _check_split_table(split, where)
        return cls(
            reader=str(data["reader"]),
            task=str(data.get("task", "multilabel")),
            preset=data.get("preset"),
            name=data.get("name"),
            paths={k: resolve(v, f"paths.{k}") for k, v in paths_raw.items()},
            options=dict(options),
            split_seed=int(split.get("seed", 0)),
            split_fractions=tuple(split.get("fractions", (0.8, 0.1, 0.1))),
            stratify=bool(split.get("stratify", True)),
            group_disjoint=bool(split.get("group_disjoint", True)),
            tags_file=resolve(data["tags"], "tags") if data.get("tags") else None,
            cache_dir=resolve(data["cache"], "cache") if data.get("cache") else None,
            store_dir=resolve(data["store"], "store") if data.get("store") else None,
            features=dict(features),
            source=source,
            targets=data.get("targets", ()),
        )


def _check_split_table(split: dict[str, Any], where: str) -> None:
    """``[split]`` values of the right types (a quoted seed or a bare fraction was a traceback, and
    ``stratify = "no"`` silently meant yes)."""
    seed = split.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{where}: [split] seed = {seed!r}; give a whole number, e.g. seed = 0")
    fractions = split.get("fractions", [0.8, 0.1, 0.1])
    if not isinstance(fractions, (list, tuple)) or len(fractions) != 3 \
            or not all(isinstance(f, (int, float)) and not isinstance(f, bool) for f in fractions):
        raise ConfigError(f"{where}: [split] fractions = {fractions!r}; give three non-negative numbers (train, "
                          "validation, test) that sum to 1, e.g. fractions = [0.8, 0.1, 0.1]")
    for key in ("stratify", "group_disjoint"):
        if key in split and not isinstance(split[key], bool):
            raise ConfigError(f"{where}: [split] {key} = {split[key]!r}; give true or false (without quotes)")


def _check_targets(task: str, targets: Any, reader: str, where: str) -> tuple[str, ...]:
    """``targets`` of a regression dataset: a non-empty list of distinct column names of a CSV manifest."""
    if task != "regression":
        if targets:
            raise ConfigError(f"{where}targets = {list(targets)!r} is only for task = \"regression\"; remove it "
                              "or set task = \"regression\"")
        return ()
    if reader != "csv":
        raise ConfigError(f"{where}task = \"regression\" reads numeric columns of a CSV manifest; use reader = \"csv\"")
    if isinstance(targets, str) or not isinstance(targets, (list, tuple)) or not targets \
            or not all(isinstance(t, str) and t.strip() for t in targets):
        raise ConfigError(f"{where}task = \"regression\" needs targets = [\"column\", ...] naming numeric columns "
                          f"of the manifest (e.g. targets = [\"valence\", \"arousal\"]), got {targets!r}")
    names = tuple(t.strip() for t in targets)
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}targets = {list(names)!r} names a column twice; list each once")
    return names


def load_dataset_config(path: str | Path) -> DatasetConfig:
    """Read a dataset TOML file; relative paths in it are resolved against its folder."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        tomls = sorted(p.name for p in path.glob("*.toml"))
        raise ConfigError(f"{path} is a folder; pass the dataset's TOML file"
                          + (f", e.g. {path / tomls[0]}" if tomls else " (reader, paths, preset, task: see the README's "
                             "\"Your own data\")"))
    if not path.is_file():
        raise ConfigError(f"{path}: dataset config not found; pass the TOML file describing the dataset")
    from musetag.textfiles import read_toml

    return DatasetConfig.from_dict(read_toml(path), base_dir=path.parent, source=path)
