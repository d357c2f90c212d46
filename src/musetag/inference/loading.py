"""Load a model by name or path: where names resolve (as whisper's ``load_model`` does).

:func:`load_model` takes a package folder or archive, or a pretrained model's name (``musetag models
--pretrained``): a name is pulled into the cache on first use, checked and converted into a package
(:mod:`musetag.inference.hub`), then read by :func:`musetag.inference.package.load_package`, which reads
files only and never resolves a name or downloads. ``Tagger.from_package``, ``load_embedder``, the
service and the commands load through here.
"""
from __future__ import annotations

import os

from musetag.inference.package import ModelPackage, load_package


def load_model(model: str | os.PathLike, *, load_weights: bool = True, progress: bool | None = None) -> ModelPackage:
    """The package of ``model``: an existing folder or archive as given, a pretrained name pulled (once)."""
    from musetag.inference.hub import resolve

    if isinstance(model, ModelPackage):  # already loaded
        return model
    if not isinstance(model, (str, os.PathLike)):
        from musetag.errors import ConfigError

        raise ConfigError(f"a model is a pretrained name, a package folder or an archive path, not "
                          f"{type(model).__name__} {model!r:.80}")
    return load_package(resolve(model, progress=progress), load_weights=load_weights)
