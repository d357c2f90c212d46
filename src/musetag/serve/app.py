"""HTTP tagging service (FastAPI): ``create_app(package_path, ...)`` and ``serve(...)``.

Endpoints
---------
``POST /v1/tag``
    multipart upload (field ``file``) or the raw audio as the request body; query ``top_k``.
    Returns ``{"filename", "duration", "top_tags": [{"tag", "score"}], "decisions", "scores",
    "warnings", "n_segments", "model", "elapsed_ms"}``; ``warnings`` (a list, usually empty) flags scores of
    audio shorter than the model's input, silent, or damaged (:mod:`musetag.inference.checks`).
    ``segments=true`` adds ``tags`` (the vocabulary) and ``segments``: one ``{"start", "end",
    "scores": [one per tag]}`` per window (seconds), from the same network pass as ``scores``.
    ``model=ID`` picks one of several served models (404 ``unknown_model`` names them).
``GET /v1/models``
    the served models (``musetag serve MODEL_A MODEL_B``): ``{"default", "models": [{"id", ...}]}``.
``GET /v1/tags``
    the model's tag vocabulary, task, thresholds and model description (``?model=ID``).
``POST /v1/similar``
    the same upload; query ``k``. Returns the ``k`` catalogue tracks that sound closest
    (``{"filename", "matches": [{"rank", "path", "score"}], "index", "elapsed_ms"}``), searched in
    the embeddings given with ``similar_index`` (``musetag embed`` with the same package; see
    :mod:`musetag.tag.similarity`). Without an index it answers 404 ``no_index``.
``GET /v1/moods``
    "tracks that sound like this mood": query ``tags`` (``happy,-sad,calm:0.5``: weights, a
    minus for "not this mood") and ``k``; ranks the tracks of the tag-score table given with
    ``mood_index`` (``musetag tag ... --out scores.csv``) by their standardised scores for those
    tags (:class:`musetag.tag.similarity.MoodIndex`). Without a table: 404 ``no_index``; an unknown
    tag: 400 ``unknown_tag`` naming the known ones.
``GET /healthz``
    ``{"status": "ok", ...}`` once the decoders are running.
``GET /``
    a web page: choose or drop a file, play it, see its tags as bars and over time (a timeline
    synchronised with the player); with several models, pick one or see them side by side.
``/docs``, ``/redoc``, ``/openapi.json``
    the OpenAPI description. The documentation pages load Swagger UI / ReDoc from the
    ``fastapi-offline`` package (``/docs-static``) when it is installed (the ``serve`` extra), so
    they work on machines without internet; otherwise FastAPI's CDN-hosted pages are used.

Robustness: uploads beyond ``max_upload_mb`` get 413 (checked on ``Content-Length`` and while
reading); a body that has not fully arrived ``body_timeout`` seconds after the request started
(a stalled or trickling client) gets 408 and the connection is closed, while other requests
(``/healthz``) are answered meanwhile; a client that disconnects mid-upload is logged in one line
(no traceback); decoding runs in ``max_concurrency`` worker processes; a request waits its turn for an
idle one in a bounded queue (``queue`` requests at most, each for at most ``queue_timeout`` seconds,
:mod:`musetag.serve.queue`) and gets 503 with ``Retry-After`` only when the queue is full or its wait ran
out; a decode that runs past ``decode_timeout`` seconds is stopped
(its process is replaced) and answered 422; a decoder that crashes is replaced too. Every error
is a JSON body ``{"error": code, "message": text}`` with a 4xx status; the network itself runs
in this process.

Access: with ``api_key`` (``--api-key`` or ``$MUSETAG_API_KEY``) every ``/v1/*`` request needs
``Authorization: Bearer KEY`` or gets 401 (:mod:`musetag.serve.auth`); ``/healthz`` stays open and
says ``"auth": true`` so the page knows to ask for the key. :func:`serve` refuses a non-loopback host
without a key unless ``allow_anonymous``.

Layout: this module builds the app; the routes are :mod:`musetag.serve.routes`, what they serve is
:class:`musetag.serve.state.ServeState` (``app.state.serve``), uploads are read by
:mod:`musetag.serve.upload`, errors formatted by :mod:`musetag.serve.responses`, the decoder processes
are :mod:`musetag.serve.decoders`. The queue, the key check and the error format are not tied to the
tagging routes. ``app.state.tagger`` is the (first) loaded :class:`Tagger`, ``app.state.taggers`` all.
"""
from __future__ import annotations

import asyncio
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from musetag.errors import ConfigError
from musetag.serve.auth import ApiKeyMiddleware, check_bind, check_port, resolve_api_key, run_server
from musetag.serve.responses import install_error_handlers
from musetag.serve.routes import router, static_router
from musetag.serve.state import ServeState, load_state, model_id  # noqa: F401 - model_id: public name
from musetag.serve.upload import MULTIPART_SLACK  # noqa: F401 - kept importable from here

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).with_name("static")
DOCS_STATIC_URL = "/docs-static"  # Swagger UI and ReDoc assets (fastapi-offline), apart from the page's /static
DEFAULT_QUEUE = 32  # requests waiting for a decoder: 8 clients on 2 decoders need 6; room for bursts
DEFAULT_QUEUE_TIMEOUT = 60.0  # seconds a request may wait for a decoder


def _new_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose /docs and /redoc pages need no CDN when ``fastapi-offline`` is installed."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        log.debug("fastapi-offline is not installed: /docs loads Swagger UI from a CDN")
        return FastAPI(**kwargs)
    return FastAPIOffline(static_url=DOCS_STATIC_URL, **kwargs)


def _check_settings(settings: dict[str, Any]) -> None:
    for name, option in (("max_upload_mb", "--max-upload-mb"), ("decode_timeout", "--decode-timeout"),
                         ("body_timeout", "--body-timeout"), ("queue_timeout", "--queue-timeout")):
        if not settings[name] > 0:
            raise ConfigError(f"{option} must be positive, got {settings[name]}")
    if settings["max_concurrency"] < 1:
        raise ConfigError(f"--max-concurrency must be at least 1, got {settings['max_concurrency']}")
    if settings["queue"] < 0:
        raise ConfigError(f"--queue must be 0 or more (requests waiting for a decoder), got {settings['queue']}")


def _lifespan(state: ServeState):
    @asynccontextmanager
    async def lifespan(app):
        for each in state.pools.values():
            await asyncio.to_thread(each.wait_ready)
        app.state.decoders = state.model_pool[state.ids[0]]
        app.state.decoder_pools = state.model_pool
        log.info("musetag serve: %s ready (%d decoders, up to %d requests waiting)%s", ", ".join(state.ids),
                 state.settings["max_concurrency"] * len(state.pools), state.settings["queue"],
                 "; /v1/* needs the API key" if state.api_key else "")
        try:
            yield
        finally:
            state.close()

    return lifespan


def create_app(
    package_path: str | os.PathLike | list[str | os.PathLike],
    *,
    max_upload_mb: float = 50.0,
    max_concurrency: int = 2,
    queue: int = DEFAULT_QUEUE,
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
    decode_timeout: float = 60.0,
    body_timeout: float = 120.0,
    top_k: int = 10,
    backend: str = "auto",
    threshold: float | str | None = None,
    batch_size: int = 32,
    similar_index: str | os.PathLike | None = None,
    mood_index: str | os.PathLike | None = None,
    api_key: str | None = None,
):
    """Build the FastAPI app serving the model package at ``package_path`` (or several: a list; the
    first is the default, the others are picked with ``?model=ID``, see :func:`model_id`).

    The package is loaded (and verified) now, so a bad package fails before the server starts;
    the decoder processes start with the app (lifespan) and ``/healthz`` answers once they run.
    ``api_key`` (None: open) protects ``/v1/*``; the environment is not read here (see :func:`serve`).
    """
    from musetag import __version__

    settings = {"max_upload_mb": max_upload_mb, "max_concurrency": max_concurrency, "queue": queue,
                "queue_timeout": queue_timeout, "decode_timeout": decode_timeout, "body_timeout": body_timeout,
                "top_k": top_k}
    _check_settings(settings)
    if api_key is not None:
        api_key = resolve_api_key(api_key, env={})
    paths = [package_path] if isinstance(package_path, (str, os.PathLike)) else list(package_path)
    state = load_state(paths, settings, backend=backend, threshold=threshold, batch_size=batch_size,
                       similar_index=similar_index, mood_index=mood_index, api_key=api_key)
    package = state.taggers[state.ids[0]].package
    app = _new_app(
        title="musetag",
        version=__version__,
        description=(
            f"Tags music with the model package `{package.path}` ({package.model_name}, {package.outputs_phrase}, "
            f"{package.task}). POST audio to /v1/tag."
            + (" Every /v1 request needs the header `Authorization: Bearer KEY`." if api_key else "")
        ),
        lifespan=_lifespan(state),
    )
    app.state.serve = state
    app.state.tagger = state.taggers[state.ids[0]]
    app.state.taggers = state.taggers  # every served model by its id (the first is the default)
    app.state.settings = settings  # the same dict the routes read (tests change limits in place)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(static_router(STATIC_DIR))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    return app


def serve(
    package_path: str | os.PathLike | list[str | os.PathLike],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    api_key: str | None = None,
    allow_anonymous: bool = False,
    **app_kwargs: Any,
) -> None:
    """Run the service with uvicorn until interrupted. ``api_key`` None reads ``$MUSETAG_API_KEY``;
    a non-loopback ``host`` without a key is refused unless ``allow_anonymous``."""
    api_key = resolve_api_key(api_key)
    check_bind(host, api_key, allow_anonymous)
    check_port(host, port)
    app = create_app(package_path, api_key=api_key, **app_kwargs)
    run_server(app, host, port, log_level)
