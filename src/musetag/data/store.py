"""Where a dataset's feature cache lives, and the array store that caches share.

One rule for ``musetag prepare`` and ``musetag train`` (:func:`dataset_cache_dir`): the dataset
TOML's ``cache = ...`` when it is set (and not a cache of other features), else
``.musetag-cache/<name>-<features hash>`` beside the TOML. So ``prepare --data D.toml`` followed by
``train --data D.toml`` finds the same folder without any ``--out``.

A cache folder holds one dataset's view (``index.json``, ``stats.json``, the split and tags of each
track); the arrays themselves sit in an *array store*, one ``.npy`` per audio file and feature
setting, named by :func:`audio_key`: the audio file's resolved path, size and modification time.
Two datasets over the same files (a genre task and a mood task on one manifest) therefore share
every array, and the second ``prepare`` decodes nothing. The store of the default caches is
``.musetag-cache/features`` beside the TOML (shared by every TOML in that folder); a cache in a
folder of its own (``cache = ...`` or ``--out``) keeps its arrays in ``CACHE/features`` unless the
TOML names a shared ``store = "..."``.

Why path + size + mtime and not a hash of the content: it costs one ``stat`` per file, so every
``train`` start (which checks the cache) stays instant on 100k-file corpora, where hashing would
read every byte again; a file edited in place gets a new mtime, so stale arrays are never used.
The price: a copied or moved corpus (new paths) is decoded again once.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

#: folder (beside the dataset TOML) of the default caches and their shared array store
DEFAULT_BASE = ".musetag-cache"
_NOT_IN_KEY = ("mean", "std", "name", "extra")


def settings_key(feature_config) -> dict[str, Any]:
    """The feature settings that decide the arrays (no name, mean/std or extra), JSON-plain."""
    d = feature_config.to_dict()
    for k in _NOT_IN_KEY:
        d.pop(k, None)
    return json.loads(json.dumps(d, default=str))


def feature_key(feature_config) -> str:
    """A short hash of the feature settings (the ``<name>-<hash>`` of the default cache folders)."""
    d = feature_config.to_dict()
    for k in ("mean", "std", "name"):
        d.pop(k, None)
    if d.get("decoder") == "auto":
        d.pop("decoder")  # the default decoder keeps the keys made before the field existed
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def prepared_with(cache_dir: Path, feature_config) -> bool | None:
    """True / False: ``cache_dir`` is a ``musetag prepare`` cache of these / of other features;
    None: no cache there yet."""
    settings = Path(cache_dir) / "cache.json"
    if not settings.is_file():
        return None
    try:
        saved = json.loads(settings.read_text(encoding="utf-8")).get("features")
    except (OSError, ValueError):
        return False
    return settings_key(feature_config) == saved


def dataset_cache_dir(dataset_config, feature_config, run_dir: Path | None = None) -> Path | None:
    """The cache folder of ``dataset_config`` under ``feature_config``, the same for ``prepare`` and
    ``train``: ``cache = ...`` unless it holds other features, else ``<cache or .musetag-cache beside the
    TOML>/<name>-<features hash>``; ``run_dir/cache/...`` for a config without a file; None without either."""
    if dataset_config.cache_dir is not None:
        if prepared_with(dataset_config.cache_dir, feature_config) is not False:
            return Path(dataset_config.cache_dir)
        base = Path(dataset_config.cache_dir)
    elif dataset_config.source is not None:
        base = Path(dataset_config.source).parent / DEFAULT_BASE
    elif run_dir is not None:
        base = Path(run_dir) / "cache"
    else:
        return None
    return base / f"{dataset_config.name}-{feature_key(feature_config)}"


def default_store(dataset_config, cache_dir: Path) -> Path:
    """The array store root a new cache in ``cache_dir`` uses: ``store = ...``, the shared
    ``.musetag-cache/features`` for a default cache, else ``cache_dir/features``."""
    if getattr(dataset_config, "store_dir", None) is not None:
        return Path(dataset_config.store_dir)
    if dataset_config.source is not None:
        base = (Path(dataset_config.source).parent / DEFAULT_BASE).resolve()
        if Path(cache_dir).resolve().parent == base:
            return base / "features"
    return Path(cache_dir) / "features"


def arrays_dir(store: Path, settings: dict[str, Any], dtype: str, version: int) -> Path:
    """The store's folder for one feature setting and dtype (a new cache version: a new folder)."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return Path(store) / f"v{version}-{digest}-{dtype}"


def audio_key(path: str | Path) -> str:
    """File name (``<stem>-<hash>.npy``) of an audio file's array: resolved path + size + mtime."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    digest = hashlib.sha1(f"{resolved}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8")).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", resolved.stem).strip(".")[:60] or "track"
    return f"{stem}-{digest}.npy"
