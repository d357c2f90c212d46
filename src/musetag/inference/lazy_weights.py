"""A package's weights, checked when the package is read and turned into torch tensors only when a
torch model is built (:class:`LazyStateDict`).

Why: reading a package must not import torch (about 2 s): the onnx backend (``musetag tag`` with a
catalogue model) never needs the tensors, only the checksum. The safetensors header is validated
here without torch (its length, JSON and every tensor's byte range inside the data), so a damaged
file is still refused when the package is read; the tensors are made on first use.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from typing import Any

from musetag.errors import ModelError

__all__ = ["LazyStateDict", "check_safetensors_header"]


def check_safetensors_header(data: bytes, where: str) -> dict[str, Any]:
    """The tensor entries of safetensors ``data`` (name -> dtype, shape, data_offsets), checked to lie
    inside the file; :class:`ModelError` naming ``where`` otherwise."""

    def bad(why: str) -> ModelError:
        return ModelError(f"{where}: cannot read the weights ({why}); copy the package again or re-create it")

    if len(data) < 8:
        raise bad("shorter than a safetensors header")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise bad(f"header of {size} bytes in a file of {len(data)}")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    body = len(data) - 8 - size
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    for name, entry in tensors.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= body):
            raise bad(f"tensor {name!r} has no valid data_offsets")
    return tensors


class LazyStateDict(Mapping):
    """The tensors of checked safetensors bytes, loaded with torch on first access."""

    def __init__(self, data: bytes, where: str) -> None:
        self._names = list(check_safetensors_header(data, where))
        self._data: bytes | None = data
        self._where = where
        self._tensors: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._tensors is None:
            from safetensors.torch import load as st_load

            try:
                self._tensors = st_load(self._data)
            except Exception as exc:  # noqa: BLE001
                raise ModelError(f"{self._where}: cannot read the weights: {exc}") from exc
            self._data = None
        return self._tensors

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._names)
