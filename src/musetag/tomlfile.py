"""Reading the TOML files users write (dataset descriptions, recipes, a run's ``config.toml``): a file that is
not UTF-8 or not valid TOML is one :class:`~musetag.errors.ConfigError` naming the file and the fix, never a
traceback."""
from __future__ import annotations

import tomllib
from pathlib import Path

from musetag.errors import ConfigError

__all__ = ["read_toml"]


def read_toml(path: Path, what: str = "") -> dict:
    """The table of the TOML file ``path``; ``what`` names the kind of file in errors (``"recipe"``)."""
    name = f"{what} {path}".strip()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name}: line {line} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the "
                          "file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML ({exc}); fix the syntax") from None
