"""The HTTP tagging service and its web page (``musetag serve``)."""
from __future__ import annotations


def create_app(*args, **kwargs):
    """See :func:`musetag.serve.app.create_app` (imported lazily: FastAPI is an optional extra)."""
    from musetag.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
