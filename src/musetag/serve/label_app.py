"""The labelling page's server (``musetag label``): the same stack as ``musetag serve``.

:func:`create_label_app` builds a FastAPI app over a :class:`~musetag.tag.label_session.LabelSession`
(routes: :mod:`musetag.serve.label_routes`; page: ``static/label.html`` + ``label.js``): the API key rule of
:mod:`musetag.serve.auth` (every ``/v1/*`` request, the audio route included, needs the key when one is
set; ``/healthz`` and the page stay open and the page asks for it), the JSON error format of
:mod:`musetag.serve.responses`, and a :class:`~musetag.serve.queue.WaitQueue` in front of the model
work. The embedding thread starts with the app, so the page is usable while tracks become available.
:func:`serve_label` runs it with uvicorn (a non-loopback host without a key is refused).
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi.staticfiles import StaticFiles
from fastapi.responses import FileResponse

from musetag.serve.app import DEFAULT_QUEUE, DEFAULT_QUEUE_TIMEOUT, _new_app
from musetag.serve.auth import ApiKeyMiddleware, check_bind, check_port, resolve_api_key, run_server
from musetag.serve.label_routes import router
from musetag.serve.queue import WaitQueue
from musetag.serve.responses import install_error_handlers

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).with_name("static")


def create_label_app(session, *, api_key: str | None = None, queue: int = DEFAULT_QUEUE,
                     queue_timeout: float = DEFAULT_QUEUE_TIMEOUT, start_embedding: bool = True):
    """The app serving ``session``; ``api_key`` (None: open) protects ``/v1/*``."""
    from musetag import __version__

    if api_key is not None:
        api_key = resolve_api_key(api_key, env={})
    label_queue = WaitQueue(1, queue, queue_timeout)

    @asynccontextmanager
    async def lifespan(app):
        if start_embedding:
            session.job.start()
        progress = session.job.progress()
        log.info("musetag label: %d tracks (%d embedded, %d to embed), %d labelled%s", progress["total"],
                 progress["embedded"], len(session.job.todo), session.summary()["labelled"],
                 "; /v1/* needs the API key" if api_key else "")
        yield

    app = _new_app(title="musetag label", version=__version__, lifespan=lifespan,
                   description=f"Labelling page of {session.project.dir}: tags {', '.join(session.tags)}.")
    app.state.label_session = session
    app.state.label_queue = label_queue
    app.state.api_key = api_key
    install_error_handlers(app)
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "label.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    return app


def serve_label(session, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                allow_anonymous: bool = False, log_level: str = "info", **kwargs) -> None:
    """Run the labelling page with uvicorn until interrupted (``api_key`` None reads ``$MUSETAG_API_KEY``)."""
    api_key = resolve_api_key(api_key)
    check_bind(host, api_key, allow_anonymous)
    check_port(host, port)
    app = create_label_app(session, api_key=api_key, **kwargs)
    run_server(app, host, port, log_level)
