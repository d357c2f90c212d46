"""What the service holds while it runs (:class:`ServeState`, kept as ``app.state.serve``): the
served models by id, their decoder pools and wait queues, the optional similarity and mood indexes,
and the settings. :func:`load_state` loads and verifies everything before the server starts, so a bad
package or index fails at once and leaves no decoder process behind."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musetag.errors import ConfigError
from musetag.serve.decoders import DecoderPool
from musetag.serve.queue import WaitQueue


def model_id(path: str | os.PathLike) -> str:
    """The name a served model goes by in ``?model=``: a pretrained name as given, else the package
    folder's (or archive's) name."""
    text = str(path)
    name = Path(text).name if (os.sep in text or Path(text).exists()) else text
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or text
    return name or text


def model_info(package) -> dict[str, Any]:
    pretrained = package.source.get("pretrained") or {}
    return {
        "name": package.model_name,
        "task": package.task,
        "n_tags": package.n_tags,
        "sha256": package.sha256,
        "musetag_version": package.musetag_version,
        "feature_config": package.features.get("name", "custom"),
        # where the weights come from and under which terms (shown on the page)
        "pretrained": pretrained.get("name"),
        "licence": package.licence,
        "citation": package.citation,
        "source": pretrained.get("upstream") or package.source.get("run_dir"),
        "source_url": pretrained.get("url"),
    }


@dataclass
class ServeState:
    ids: list[str]  # served model ids, the first is the default
    taggers: dict[str, Any]  # id -> Tagger
    pools: dict[str, DecoderPool]  # one per distinct front end (features + windows)
    model_pool: dict[str, DecoderPool]  # id -> its front end's pool
    queues: dict[int, WaitQueue]  # id(pool) -> the queue in front of its decoders
    settings: dict[str, Any]
    similarity: Any = None
    moods: Any = None
    infos: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_key: str | None = None

    def queue_for(self, pool: DecoderPool) -> WaitQueue:
        return self.queues[id(pool)]

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


def unique_ids(paths: list) -> list[str]:
    ids: list[str] = []
    for path in paths:
        base = model_id(path)
        name, n = base, 2
        while name in ids:
            name, n = f"{base}-{n}", n + 1
        ids.append(name)
    return ids


def _start_pools(paths: list, ids: list[str], size: int,
                 backend: str = "torch") -> tuple[dict[str, DecoderPool], dict[str, DecoderPool]]:
    """Decoder processes first: they import their modules while this process loads the models. Models
    with the same front end, windows and feature engine share one pool; a model that runs on
    onnxruntime (``backend`` resolved per package) gets numpy decoders, which never import torch."""
    from musetag.inference.loading import load_model
    from musetag.inference.runners import resolve_backend

    described = [load_model(path, load_weights=False) for path in paths]
    pools: dict[str, DecoderPool] = {}
    model_pool: dict[str, DecoderPool] = {}
    try:
        for mid, desc in zip(ids, described):
            engine = "numpy" if resolve_backend(desc, backend) == "onnx" else "torch"
            key = json.dumps([desc.features, desc.segment, engine], sort_keys=True, default=str)
            if key not in pools:
                pools[key] = DecoderPool(desc.features, desc.segment, size, engine=engine)
            model_pool[mid] = pools[key]
    except BaseException:
        for made in pools.values():
            made.close()
        raise
    return pools, model_pool


def load_state(paths: list, settings: dict[str, Any], *, backend: str, threshold, batch_size: int,
               similar_index=None, mood_index=None, api_key: str | None = None) -> ServeState:
    from musetag.inference.tagger import Tagger

    if not paths:
        raise ConfigError("musetag serve needs at least one MODEL")
    ids = unique_ids(paths)
    size = int(settings["max_concurrency"])
    pools, model_pool = _start_pools(paths, ids, size, backend)
    queues = {id(p): WaitQueue(size, settings["queue"], settings["queue_timeout"]) for p in pools.values()}
    try:
        from musetag.inference.loading import load_model

        packages = {mid: load_model(path) for mid, path in zip(ids, paths)}
        if threshold is not None and not any(p.task == "multilabel" for p in packages.values()):
            raise ConfigError(f"--threshold {threshold}: no served model decides tags by a threshold (regression or "
                              "multiclass packages); drop --threshold")
        # one --threshold for the models that decide by one; the others are served as they are
        taggers = {mid: Tagger(pkg, backend=backend, batch_size=batch_size,
                               threshold=threshold if pkg.task == "multilabel" else None)
                   for mid, pkg in packages.items()}
        similarity = moods = None
        if similar_index is not None:
            from musetag.tag.similarity import SimilarityService

            similarity = SimilarityService(similar_index, taggers[ids[0]].package)
        if mood_index is not None:
            from musetag.tag.similarity import MoodIndex

            moods = MoodIndex.from_file(mood_index)
    except BaseException:
        for made in pools.values():
            made.close()  # a bad package or index must not leave decoder processes behind
        raise
    infos = {mid: {"id": mid, **model_info(t.package)} for mid, t in taggers.items()}
    return ServeState(ids=ids, taggers=taggers, pools=pools, model_pool=model_pool, queues=queues,
                      settings=settings, similarity=similarity, moods=moods, infos=infos, api_key=api_key)
