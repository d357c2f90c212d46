"""The corpus-reader registry: a :class:`ReaderSpec` per reader, with the ``[paths]`` and
``[options]`` keys it accepts. Reader modules (``csv_manifest``, ``fma``, ``gtzan``, ``jamendo``)
register themselves here; :mod:`musetag.data.datasets` imports them and reads a corpus with them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from musetag.errors import ConfigError

__all__ = ["READERS", "ReaderSpec", "register_reader"]


@dataclass(frozen=True)
class ReaderSpec:
    name: str
    read: Callable[..., list]  # read(config) -> list[TrackRecord]
    required_paths: tuple[str, ...] = ()
    optional_paths: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # name -> default
    one_of_paths: tuple[str, ...] = ()  # at least one of these is needed

    def validate(self, config) -> None:
        where = config.where
        allowed = set(self.required_paths) | set(self.optional_paths) | set(self.one_of_paths)
        unknown = set(config.paths) - allowed
        if unknown:
            raise ConfigError(
                f"{where}: reader {self.name!r} does not use paths {sorted(unknown)}; "
                f"valid [paths] keys: {', '.join(sorted(allowed))}"
            )
        missing = [k for k in self.required_paths if k not in config.paths]
        if missing:
            raise ConfigError(f"{where}: reader {self.name!r} needs [paths] {', '.join(missing)}")
        if self.one_of_paths and not any(k in config.paths for k in self.one_of_paths):
            raise ConfigError(
                f"{where}: reader {self.name!r} needs at least one of [paths] {', '.join(self.one_of_paths)}"
            )
        unknown = set(config.options) - set(self.options)
        if unknown:
            raise ConfigError(
                f"{where}: reader {self.name!r} has no option(s) {sorted(unknown)}; "
                f"valid [options]: {', '.join(sorted(self.options)) or '(none)'}"
            )

    def option(self, config, key: str) -> Any:
        return config.options.get(key, self.options[key])


READERS: dict[str, ReaderSpec] = {}


def register_reader(spec: ReaderSpec) -> ReaderSpec:
    READERS[spec.name] = spec
    return spec
