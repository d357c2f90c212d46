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
(no traceback); decoding runs in ``max_concurrency`` worker processes, each request needs an idle one
or gets 503 with ``Retry-After``; a decode that runs past ``decode_timeout`` seconds is stopped
(its process is replaced) and answered 422; a decoder that crashes is replaced too. Every error
is a JSON body ``{"error": code, "message": text}`` with a 4xx status; the network itself runs
in this process.

Extending: ``create_app`` returns a FastAPI app holding the loaded :class:`Tagger` as
``app.state.tagger``; more routes (``POST /v1/similar``) can be added to it.

One file on purpose (about 540 lines): the routes share one app state and error format; the decoder
processes are :mod:`musetag.serve.decoders`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from musetag.errors import ConfigError
from musetag.evaluate.thresholds import thresholds_to_json
from musetag.serve.decoders import DecoderCrashed, DecoderPool, DecodeTimeout

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).with_name("static")
DOCS_STATIC_URL = "/docs-static"  # Swagger UI and ReDoc assets (fastapi-offline), apart from the page's /static
MULTIPART_SLACK = 64 * 1024  # multipart boundaries and headers on top of the file itself


# ---------------------------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------------------------
def _new_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose /docs and /redoc pages need no CDN when ``fastapi-offline`` is installed."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        log.debug("fastapi-offline is not installed: /docs loads Swagger UI from a CDN")
        return FastAPI(**kwargs)
    return FastAPIOffline(static_url=DOCS_STATIC_URL, **kwargs)


def model_id(path: str | os.PathLike) -> str:
    """The name a served model goes by in ``?model=``: a pretrained name as given, else the package
    folder's (or archive's) name."""
    text = str(path)
    name = Path(text).name if (os.sep in text or Path(text).exists()) else text
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or text
    return name or text


def _model_info(package) -> dict[str, Any]:
    return {
        "name": package.model_name,
        "task": package.task,
        "n_tags": package.n_tags,
        "sha256": package.sha256,
        "musetag_version": package.musetag_version,
        "feature_config": package.features.get("name", "custom"),
        # where the weights come from and under which terms (shown on the page)
        "pretrained": (package.source.get("pretrained") or {}).get("name"),
        "licence": package.licence,
        "citation": package.citation,
        "source": (package.source.get("pretrained") or {}).get("upstream") or package.source.get("run_dir"),
        "source_url": (package.source.get("pretrained") or {}).get("url"),
    }


def create_app(
    package_path: str | os.PathLike | list[str | os.PathLike],
    *,
    max_upload_mb: float = 50.0,
    max_concurrency: int = 2,
    decode_timeout: float = 60.0,
    body_timeout: float = 120.0,
    top_k: int = 10,
    backend: str = "torch",
    threshold: float | str | None = None,
    batch_size: int = 32,
    similar_index: str | os.PathLike | None = None,
    mood_index: str | os.PathLike | None = None,
):
    """Build the FastAPI app serving the model package at ``package_path`` (or several: a list; the
    first is the default, the others are picked with ``?model=ID``, see :func:`model_id`).

    The package is loaded (and verified) now, so a bad package fails before the server starts;
    the decoder processes start with the app (lifespan) and ``/healthz`` answers once they run.
    """
    from musetag import __version__
    from musetag.inference.tagger import Tagger

    if max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    if max_concurrency < 1:
        raise ConfigError(f"--max-concurrency must be at least 1, got {max_concurrency}")
    if decode_timeout <= 0:
        raise ConfigError(f"--decode-timeout must be positive, got {decode_timeout}")
    if body_timeout <= 0:
        raise ConfigError(f"--body-timeout must be positive, got {body_timeout}")
    from musetag.inference.loading import load_model

    paths = [package_path] if isinstance(package_path, (str, os.PathLike)) else list(package_path)
    if not paths:
        raise ConfigError("musetag serve needs at least one MODEL")
    ids: list[str] = []
    for path in paths:
        base = model_id(path)
        name, n = base, 2
        while name in ids:
            name, n = f"{base}-{n}", n + 1
        ids.append(name)
    # start the decoders first: their process imports torch & co. while this one loads the model.
    # Models with the same front end and windows share one pool of decoders.
    described = [load_model(path, load_weights=False) for path in paths]
    pools: dict[str, DecoderPool] = {}
    model_pool: dict[str, DecoderPool] = {}
    try:
        for mid, desc in zip(ids, described):
            key = json.dumps([desc.features, desc.segment], sort_keys=True, default=str)
            if key not in pools:
                pools[key] = DecoderPool(desc.features, desc.segment, max_concurrency)
            model_pool[mid] = pools[key]
    except BaseException:
        for made in pools.values():
            made.close()
        raise
    pool = model_pool[ids[0]]
    similarity = None
    try:
        taggers = {
            mid: Tagger.from_package(path, backend=backend, threshold=threshold, batch_size=batch_size)
            for mid, path in zip(ids, paths)
        }
        tagger = taggers[ids[0]]
        if similar_index is not None:
            from musetag.tag.similarity import SimilarityService

            similarity = SimilarityService(similar_index, tagger.package)
        moods = None
        if mood_index is not None:
            from musetag.tag.similarity import MoodIndex

            moods = MoodIndex.from_file(mood_index)
    except BaseException:
        for made in pools.values():
            made.close()  # a bad package or index must not leave decoder processes behind
        raise
    max_bytes = int(max_upload_mb * 1024 * 1024)
    package = tagger.package
    infos = {mid: {"id": mid, **_model_info(t.package)} for mid, t in taggers.items()}

    @asynccontextmanager
    async def lifespan(app):
        for each in pools.values():
            await asyncio.to_thread(each.wait_ready)
        app.state.decoders = pool
        app.state.decoder_pools = model_pool
        log.info("musetag serve: %s ready (%d decoders)", ", ".join(ids), max_concurrency * len(pools))
        try:
            yield
        finally:
            for each in pools.values():
                each.close()

    app = _new_app(
        title="musetag",
        version=__version__,
        description=(
            f"Tags music with the model package `{package.path}` ({package.model_name}, {package.n_tags} tags, "
            f"{package.task}). POST audio to /v1/tag."
        ),
        lifespan=lifespan,
    )
    app.state.tagger = tagger
    app.state.taggers = taggers  # every served model by its id (the first is the default)
    app.state.settings = {
        "max_upload_mb": max_upload_mb,
        "max_concurrency": max_concurrency,
        "decode_timeout": decode_timeout,
        "body_timeout": body_timeout,
        "top_k": top_k,
    }

    def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body"))
            parts.append(f"{where}: {err.get('msg')}")
        return error(400, "bad_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, "http_error", str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # pragma: no cover - last resort
        log.exception("unexpected error on %s", request.url.path)
        return error(500, "internal_error", f"{type(exc).__name__}: {exc}")

    # -- upload reading ------------------------------------------------------------------------
    async def read_upload(request: Request) -> tuple[str, bytes] | JSONResponse:
        ctype = request.headers.get("content-type", "")
        is_multipart = ctype.startswith("multipart/form-data")
        limit = max_bytes + (MULTIPART_SLACK if is_multipart else 0)
        too_big = error(
            413,
            "upload_too_large",
            f"the upload is larger than the server's limit of {max_upload_mb:g} MB; send a shorter or "
            "more compressed file (the limit is set with --max-upload-mb)",
        )
        length = request.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > limit:
                    return too_big
            except ValueError:
                return error(400, "bad_request", f"invalid Content-Length header {length!r}")
        chunks, size = [], 0
        limit_s = float(request.app.state.settings["body_timeout"])
        deadline = time.monotonic() + limit_s
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        stream = request.stream().__aiter__()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                try:
                    chunk = await asyncio.wait_for(stream.__anext__(), remaining)
                except StopAsyncIteration:
                    break
                size += len(chunk)
                if size > limit:
                    return too_big
                chunks.append(chunk)
        except asyncio.TimeoutError:
            log.warning("%s %s: upload timed out after %g s with %d of %s bytes received; answered 408",
                        client, request.url.path, limit_s, size, length or "?")
            return error(
                408, "body_timeout",
                f"the upload did not arrive within {limit_s:g} s ({size} bytes received); send the whole file "
                "at once (the limit is set with --body-timeout)",
                headers={"Connection": "close"},
            )
        except ClientDisconnect:
            log.warning("%s %s: client disconnected during the upload after %d of %s bytes",
                        client, request.url.path, size, length or "?")
            return error(400, "client_disconnected", "the client disconnected before the upload was complete")
        body = b"".join(chunks)
        name = request.query_params.get("filename") or request.headers.get("x-filename") or "upload"
        if not is_multipart:
            if not body:
                return error(
                    400, "empty_upload", "the request body is empty; send the audio file as the body or as "
                    "a multipart field named 'file'"
                )
            return name, body

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=2, max_fields=20)
        except Exception as exc:  # noqa: BLE001 - malformed multipart is the client's problem
            return error(400, "bad_multipart", f"the multipart body could not be parsed: {exc}")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            upload = next((v for v in form.values() if not isinstance(v, str)), None)
        if upload is None:
            return error(400, "missing_file", "the multipart upload has no file; send it in a field named 'file'")
        data = await upload.read()
        await form.close()
        if len(data) > max_bytes:
            return too_big
        if not data:
            return error(400, "empty_upload", f"the uploaded file {upload.filename or ''} is empty (0 bytes)")
        return upload.filename or name, data

    def pick_model(model: str | None) -> str | JSONResponse:
        if model is None or model == "":
            return ids[0]
        if model not in taggers:
            return error(404, "unknown_model", f"unknown model {model!r}; this server serves {', '.join(ids)} "
                         "(GET /v1/models lists them)")
        return model

    async def decode_upload(request: Request, model: str | None = None) -> tuple[str, Any, Any, Any, Any] | JSONResponse:
        """Read the upload and decode it in an idle decoder process of ``model``'s front end:
        ``(name, segments, duration, warnings, starts)``, or the JSON error to answer (busy, timeout,
        crash, not audio, bad request)."""
        got = await read_upload(request)
        if isinstance(got, JSONResponse):
            return got
        name, data = got
        pool: DecoderPool = request.app.state.decoder_pools[model or ids[0]]
        decoder = pool.try_acquire()
        if decoder is None:
            return error(
                503,
                "busy",
                f"all {max_concurrency} decoders are busy; retry shortly (the limit is set with --max-concurrency)",
                headers={"Retry-After": "1"},
            )
        broken = False
        limit_s = float(request.app.state.settings["decode_timeout"])
        try:
            status, payload, duration = await asyncio.to_thread(decoder.run, name, data, limit_s)
        except DecodeTimeout:
            broken = True
            return error(
                422,
                "decode_timeout",
                f"{name}: decoding took longer than the server's limit of {limit_s:g} s and was stopped; "
                "send a shorter file (the limit is set with --decode-timeout)",
            )
        except DecoderCrashed:
            broken = True
            return error(422, "decoder_crashed", f"{name}: the audio decoder crashed on this upload; it is damaged or unsupported")
        finally:
            await asyncio.to_thread(pool.release, decoder, broken=broken) if broken else pool.release(decoder)
        if status != "ok":
            return error(422, "undecodable_audio", payload)
        duration, warnings, starts = duration
        return name, payload, duration, warnings, starts

    # -- routes -----------------------------------------------------------------------------------
    @app.post(
        "/v1/tag",
        summary="Tag one audio file",
        description=(
            "Send the audio as a multipart upload (field `file`) or as the raw request body (any content type; "
            "the filename can be given with `?filename=` or an `X-Filename` header). WAV, FLAC, MP3 and OGG decode. "
            "Errors: 400 (empty or malformed request), 413 (larger than the upload limit), 422 (not decodable "
            "audio, or decoding ran past the time limit), 503 (all decoders busy: retry after `Retry-After` seconds)."
        ),
        responses={
            400: {"description": "empty or malformed request"},
            413: {"description": "upload larger than --max-upload-mb"},
            422: {"description": "the upload is not decodable audio, or decoding timed out"},
            503: {"description": "saturated: every decoder is busy; see Retry-After"},
        },
    )
    async def tag_upload(
        request: Request,
        top_k: int = Query(default=top_k, ge=0, le=10_000),
        segments: bool = Query(default=False, description="also return every window's scores and times"),
        model: str | None = Query(default=None, description="the served model's id (GET /v1/models); default: the first"),
    ):
        started = time.perf_counter()
        mid = pick_model(model)
        if isinstance(mid, JSONResponse):
            return mid
        got = await decode_upload(request, mid)
        if isinstance(got, JSONResponse):
            return got
        name, payload, duration, warnings, starts = got
        chosen = taggers[mid]
        result = await asyncio.to_thread(
            chosen.score_segments, payload, path=name, duration=duration, warnings=warnings, starts=starts,
            keep_segments=segments,
        )
        row = result.to_row(top_k)
        extra = {"tags": chosen.tags, "segments": row["segments"]} if segments else {}
        return {
            "model": mid,
            "filename": name,
            "duration": row["duration"],
            "top_tags": row["top_tags"],
            "decisions": row["decisions"],
            "scores": row["scores"],
            "warnings": row["warnings"],
            "n_segments": result.n_segments,
            **extra,
            "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 1),
        }

    @app.get("/v1/tags", summary="The model's tags, thresholds and description")
    async def list_tags(model: str | None = Query(default=None, description="the served model's id; default: the first")):
        mid = pick_model(model)
        if isinstance(mid, JSONResponse):
            return mid
        chosen = taggers[mid]
        info = {k: v for k, v in infos[mid].items() if k != "id"}
        return {
            "tags": chosen.tags,
            "task": chosen.task,
            "thresholds": thresholds_to_json(chosen.thresholds),  # +inf (never on) as null
            "model": info,
            "id": mid,
        }

    @app.get("/v1/models", summary="The served models (the first is the default)")
    async def list_models():
        return {"default": ids[0], "models": [infos[mid] for mid in ids]}

    @app.post(
        "/v1/similar",
        summary="Find the catalogue tracks that sound like an uploaded audio file",
        description=(
            "Upload as for /v1/tag; returns the `k` closest tracks (cosine similarity of the model's embeddings) "
            "of the index the server was started with (`musetag serve MODEL --similar-index embeddings.npy`). "
            "Errors as for /v1/tag, plus 404 when the server has no index."
        ),
        responses={404: {"description": "the server was started without --similar-index"}},
    )
    async def similar_upload(request: Request, k: int = Query(default=10, ge=1, le=1000)):
        started = time.perf_counter()
        if similarity is None:
            return error(404, "no_index", "this server has no similarity index; start it with "
                         "`musetag serve MODEL --similar-index EMBEDDINGS` (written by `musetag embed`)")
        got = await decode_upload(request)
        if isinstance(got, JSONResponse):
            return got
        name, payload, duration, _warnings, _starts = got
        matches = await asyncio.to_thread(similarity.search_segments, payload, k)
        return {
            "filename": name,
            "duration": None if duration is None else round(float(duration), 3),
            "matches": [m.to_dict() for m in matches],
            "index": similarity.describe(),
            "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 1),
        }

    @app.get(
        "/v1/moods",
        summary="Find the catalogue tracks that sound like a mood",
        description=(
            "Ranks the tracks of the tag-score table the server was started with (`musetag serve MODEL "
            "--mood-index scores.csv`, written by `musetag tag`) by their standardised scores for the given "
            "tags: `tags=happy,energetic`, `tags=calm,-sad` (minus: not this mood) or `tags=happy:1,film:0.5`."
        ),
        responses={404: {"description": "the server was started without --mood-index"},
                   400: {"description": "no tags, a bad weight, or a tag the table does not have"}},
    )
    async def mood_search(tags: str = Query(..., description="comma-separated tags, optional :weight or -tag"),
                          k: int = Query(default=10, ge=1, le=1000)):
        from musetag.tag.similarity import parse_tag_weights

        if moods is None:
            return error(404, "no_index", "this server has no mood index; start it with "
                         "`musetag serve MODEL --mood-index SCORES` (tag scores written by `musetag tag --out`)")
        try:
            weights = parse_tag_weights(tags)
            matches = moods.search_tags(weights, k)
        except ConfigError as exc:
            return error(400, "unknown_tag" if "unknown tag" in str(exc) else "bad_query", str(exc))
        return {"query": weights, "matches": [m.to_dict() for m in matches], "tracks": len(moods.paths),
                "tags": len(moods.tags)}

    @app.get("/healthz", summary="Liveness and readiness")
    async def healthz(request: Request):
        pool: DecoderPool | None = getattr(request.app.state, "decoders", None)
        return {
            "status": "ok",
            "model": package.model_name,
            "models": ids,
            "decoders": max_concurrency * len(pools),
            "idle_decoders": pool.idle if pool else 0,
            "version": __version__,
        }

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def serve(
    package_path: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    **app_kwargs: Any,
) -> None:
    """Run the service with uvicorn until interrupted."""
    import uvicorn

    app = create_app(package_path, **app_kwargs)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
