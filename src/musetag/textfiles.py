"""Reading the text files users write or hand over (dataset descriptions, recipes, a run's ``config.toml``, tag
lists, split lists, thresholds, sharded outputs to merge): a file that is not UTF-8, or not valid TOML, is one
error naming the file, the line and the fix, never a ``UnicodeDecodeError`` traceback."""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

from musetag.errors import ConfigError, DatasetError

__all__ = ["read_text", "read_toml"]


def read_text(path: str | os.PathLike, what: str = "", *, error: type = DatasetError) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark dropped); ``what`` names the kind of file in the
    error (``"tag list"``), raised as ``error``."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        name = f"{what} {path}".strip()
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{name}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8 "
                    "(e.g. `iconv -f latin1 -t utf-8`)") from None


def read_toml(path: Path, what: str = "") -> dict:
    """The table of the TOML file ``path``; ``what`` names the kind of file in errors (``"recipe"``)."""
    text = read_text(path, what, error=ConfigError)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{f'{what} {path}'.strip()}: not valid TOML ({exc}); fix the syntax") from None
