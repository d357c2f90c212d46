"""Catalogue-scale work splitting: ``--shard I/N`` (the merge of the outputs: :mod:`musetag.tag.merge`).

A catalogue of millions of tracks is tagged (or embedded) by N independent workers: N machines, the
tasks of a scheduler's array job, or the processes ``torchrun`` starts on the GPUs of one machine.
Each worker keeps the files whose *shard key* falls in its shard; the outputs are then merged with
``musetag merge``, which refuses to silently keep two different results for one track.

The shard of a file depends only on its key, never on the other files or on the order of the
listing, so workers that list the same catalogue (even with different mount points) agree:

- the key is the path relative to the folder given on the command line (a file given directly is
  keyed by its own normalised path), with ``/`` separators, no ``./``, Unicode NFC (macOS
  writes decomposed names);
- ``sha1(key)`` read as a 64-bit integer ``h``; the file belongs to shard ``h mod N``.

Shards are numbered from 1 on the command line (``--shard 1/4`` .. ``--shard 4/4``, like
``--array=1-4``), from 0 in :class:`Shard`. Under ``torchrun`` each process further keeps the files
with ``(h // N) mod WORLD_SIZE == RANK``: the ranks of one shard split it exactly, again without
looking at the other files.
"""
from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

from musetag.errors import ConfigError
from musetag.tag.files import collect_audio_files

T = TypeVar("T")

__all__ = [
    "Shard",
    "parse_shard",
    "shard_key",
    "shard_hash",
    "select_shard",
    "distributed_shard",
    "shard_output_path",
    "collect_shard_files",
    "torchrun_device",
]


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based) of ``count``; ``rank``/``world_size`` split it among local processes."""

    index: int = 0
    count: int = 1
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index + 1}/{self.count} does not exist: use I/N with 1 <= I <= N")
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank {self.rank} is outside the world size {self.world_size}")

    @property
    def is_whole(self) -> bool:
        return self.count == 1 and self.world_size == 1

    def contains_hash(self, h: int) -> bool:
        return h % self.count == self.index and (h // self.count) % self.world_size == self.rank

    def contains(self, key: str) -> bool:
        return self.contains_hash(shard_hash(key))

    @property
    def label(self) -> str:
        """``shard-0002-of-0004`` (1-based), with ``-rank-1-of-2`` under torchrun; '' for the whole list."""
        if self.is_whole:
            return ""
        parts = []
        if self.count > 1:
            parts.append(f"shard-{self.index + 1:04d}-of-{self.count:04d}")
        if self.world_size > 1:
            parts.append(f"rank-{self.rank}-of-{self.world_size}")
        return "-".join(parts)

    def __str__(self) -> str:  # what the user typed
        text = f"{self.index + 1}/{self.count}"
        if self.world_size > 1:
            text += f" (rank {self.rank} of {self.world_size})"
        return text


def parse_shard(text: str | None) -> Shard:
    """Parse ``"I/N"`` (1-based, as on the command line); ``None`` or ``""`` means the whole list."""
    if text is None or str(text).strip() == "":
        return Shard()
    raw = str(text).strip()
    try:
        i_text, n_text = raw.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ConfigError(
            f"--shard {raw!r} is not I/N: write for example --shard 3/8 for the third of eight parts"
        ) from None
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(
            f"--shard {raw}: I must be between 1 and N (shards are numbered from 1, e.g. --shard 1/{max(n, 1)})"
        )
    return Shard(index=i - 1, count=n)


def distributed_shard(shard: Shard, env: dict[str, str] | None = None) -> Shard:
    """Split ``shard`` further among the processes of ``torchrun`` (``RANK``/``WORLD_SIZE``)."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
    except ValueError:
        raise ConfigError("RANK and WORLD_SIZE must be integers (they are set by torchrun)") from None
    if world <= 1:
        return shard
    return Shard(index=shard.index, count=shard.count, rank=rank, world_size=world)


def shard_key(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """The normalised key of ``path``: relative to ``root`` when given, '/'-separated, NFC."""
    p = os.fspath(path)
    if root is not None:
        r = os.fspath(root)
        try:
            rel = os.path.relpath(os.path.abspath(p), os.path.abspath(r))
        except ValueError:  # different drives on Windows
            rel = p
        if rel == ".":
            rel = os.path.basename(p)
        if not rel.startswith(".."):
            p = rel
    p = os.path.normpath(p).replace(os.sep, "/")
    p = str(PurePosixPath(p))
    while p.startswith("./"):
        p = p[2:]
    return unicodedata.normalize("NFC", p)


def shard_hash(key: str) -> int:
    """Stable 64-bit hash of a key (identical on every machine, Python version and run)."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def select_shard(
    items: Iterable[T], shard: Shard | str | None, *, key: Callable[[T], str] | None = None,
    root: str | os.PathLike | None = None,
) -> list[T]:
    """Keep the items of ``shard`` (a :class:`Shard` or ``"I/N"``), in their original order.

    ``key`` maps an item to its shard key; by default the item is a path, keyed by
    :func:`shard_key` relative to ``root``.
    """
    if not isinstance(shard, Shard):
        shard = parse_shard(shard)
    items = list(items)
    if shard.is_whole:
        return items
    keyf = key or (lambda item: shard_key(item, root))  # type: ignore[arg-type]
    return [item for item in items if shard.contains(keyf(item))]


def collect_shard_files(
    paths: Iterable[str | os.PathLike], shard: Shard | str | None, *, recursive: bool = False,
) -> list[str]:
    """The audio files of ``paths`` (files and folders, as ``musetag tag`` lists them) that belong to
    ``shard``. A file found in a folder is keyed relative to that folder, a file named directly by
    its normalised path, so machines that mount the catalogue at different places agree."""
    if not isinstance(shard, Shard):
        shard = parse_shard(shard)
    out: list[str] = []
    seen: set[str] = set()
    for path in paths:
        root = path if Path(path).is_dir() else None
        for f in collect_audio_files([path], recursive=recursive):
            key = os.path.abspath(f)
            if key in seen:
                continue
            seen.add(key)
            if shard.is_whole or shard.contains(shard_key(f, root)):
                out.append(f)
    return out


def empty_shard_note(paths: Iterable[str | os.PathLike], shard: Shard | None, *, recursive: bool = False) -> str | None:
    """Why a ``--shard`` part found nothing to do, when the paths hold audio but none of it falls in the
    shard (``None`` otherwise: no shard, or no audio at all). Such a part of an array job has succeeded,
    not failed: ``musetag tag`` and ``musetag embed`` print this and exit 0."""
    if shard is None or shard.is_whole:
        return None
    total = len(collect_audio_files(paths, recursive=recursive))
    if not total:
        return None
    return (f"none of the {total} audio file(s) falls in shard {shard} (files are spread over the shards by a hash "
            "of their path): nothing to do here")


def torchrun_device(default: str = "cpu") -> str:
    """``cuda:LOCAL_RANK`` under torchrun when CUDA is available, else ``default``."""
    if "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return default


def shard_output_path(out: str | os.PathLike, shard: Shard) -> Path:
    """``tags.csv`` -> ``tags.shard-0002-of-0004.csv`` (unchanged for the whole list).

    Used when several processes would otherwise write one file (torchrun). With ``--shard`` on
    separate machines the user usually names each output, but this keeps names unique anyway.
    """
    out = Path(out)
    if shard.is_whole or shard.world_size == 1:
        return out
    suffixes = "".join(out.suffixes[-1:])
    stem = out.name[: len(out.name) - len(suffixes)] if suffixes else out.name
    return out.with_name(f"{stem}.{shard.label}{suffixes}")
