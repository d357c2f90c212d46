"""The tagging service's routes (an :class:`APIRouter`); what they serve is the app's
:class:`~musetag.serve.state.ServeState` (``request.app.state.serve``). See :mod:`musetag.serve.app`
for the endpoints and the limits."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from musetag._allocator import trim_heap
from musetag.errors import ConfigError
from musetag.evaluate.thresholds import thresholds_to_json
from musetag.serve.decoders import DecoderCrashed, DecoderPool, DecodeTimeout
from musetag.serve.queue import ClientGone, QueueFull, QueueRefused
from musetag.serve.responses import error
from musetag.serve.state import ServeState
from musetag.serve.upload import read_upload

router = APIRouter()


def _state(request: Request) -> ServeState:
    return request.app.state.serve


def pick_model(state: ServeState, model: str | None) -> str | JSONResponse:
    if model is None or model == "":
        return state.ids[0]
    if model not in state.taggers:
        return error(404, "unknown_model", f"unknown model {model!r}; this server serves {', '.join(state.ids)} "
                     "(GET /v1/models lists them)")
    return model


def _refused(exc: QueueRefused, workers: int) -> JSONResponse:
    code = "busy" if isinstance(exc, QueueFull) else "queue_timeout"
    how = "--queue" if isinstance(exc, QueueFull) else "--queue-timeout"
    return error(503, code, f"{exc}; retry in {exc.retry_after} s (the {workers} decoders are set with "
                 f"--max-concurrency, the waiting requests with {how})", headers={"Retry-After": str(exc.retry_after)})


async def _decode(pool: DecoderPool, name: str, data: bytes, limit_s: float):
    decoder = pool.try_acquire()
    if decoder is None:  # cannot happen behind the queue (one slot per decoder); kept as a guard
        return error(503, "busy", "all decoders are busy; retry shortly", headers={"Retry-After": "1"})
    broken = False
    try:
        status, payload, extra = await asyncio.to_thread(decoder.run, name, data, limit_s)
    except DecodeTimeout:
        broken = True
        return error(422, "decode_timeout", f"{name}: decoding took longer than the server's limit of {limit_s:g} s "
                     "and was stopped; send a shorter file (the limit is set with --decode-timeout)")
    except DecoderCrashed:
        broken = True
        return error(422, "decoder_crashed", f"{name}: the audio decoder crashed on this upload; it is damaged or unsupported")
    finally:
        await asyncio.to_thread(pool.release, decoder, broken=broken) if broken else pool.release(decoder)
    if status != "ok":
        return error(422, "undecodable_audio", payload)
    duration, warnings, starts = extra
    return name, payload, duration, warnings, starts


async def _client_gone(request: Request) -> bool:
    """Whether the client closed its connection. The server stops reading a socket after a large body, so a close
    waiting there is seen only once reading resumes: the first look resumes it, the loop turns, the second sees."""
    if await request.is_disconnected():
        return True
    for _ in range(3):
        await asyncio.sleep(0)
    return await request.is_disconnected()


async def decode_upload(request: Request, model: str) -> tuple[str, Any, Any, Any, Any] | JSONResponse:
    """Read the upload, wait in the queue for one of ``model``'s decoders and decode it there:
    ``(name, segments, duration, warnings, starts)``, or the JSON error to answer (queue full or waited
    too long, timeout, crash, not audio, bad request)."""
    state = _state(request)
    settings = state.settings
    got = await read_upload(request, settings["max_upload_mb"], float(settings["body_timeout"]))
    if isinstance(got, JSONResponse):
        return got
    name, data = got
    pool = state.model_pool[model]
    try:
        # a client that gave up while waiting (a page that moved on to another file, a timed-out script) is not
        # decoded: the requests behind it would wait for work nobody reads
        async with state.queue_for(pool).slot(gone=lambda: _client_gone(request)):
            return await _decode(pool, name, data, float(settings["decode_timeout"]))
    except QueueRefused as exc:
        return _refused(exc, pool.size)
    except ClientGone:
        return error(499, "client_closed", f"{name}: the client closed the connection while the request waited; "
                     "nothing was decoded")


@router.post(
    "/v1/tag",
    summary="Tag one audio file",
    description=(
        "Send the audio as a multipart upload (field `file`) or as the raw request body (any content type; "
        "the filename can be given with `?filename=` or an `X-Filename` header). WAV, FLAC, MP3 and OGG decode. "
        "Errors: 400 (empty or malformed request), 401 (the server has an API key and the request lacks "
        "`Authorization: Bearer KEY`), 413 (larger than the upload limit), 422 (not decodable audio, or decoding "
        "ran past the time limit), 503 (the wait queue is full or the request waited too long: retry after "
        "`Retry-After` seconds)."
    ),
    responses={
        400: {"description": "empty or malformed request"},
        401: {"description": "missing or wrong API key"},
        413: {"description": "upload larger than --max-upload-mb"},
        422: {"description": "the upload is not decodable audio, or decoding timed out"},
        503: {"description": "saturated: the wait queue is full or the wait ran past --queue-timeout; see Retry-After"},
    },
)
async def tag_upload(
    request: Request,
    top_k: int | None = Query(default=None, ge=0, le=10_000, description="default: the server's --top-k"),
    segments: bool = Query(default=False, description="also return every window's scores and times"),
    model: str | None = Query(default=None, description="the served model's id (GET /v1/models); default: the first"),
):
    started = time.perf_counter()
    state = _state(request)
    mid = pick_model(state, model)
    if isinstance(mid, JSONResponse):
        return mid
    got = await decode_upload(request, mid)
    if isinstance(got, JSONResponse):
        return got
    name, payload, duration, warnings, starts = got
    chosen = state.taggers[mid]
    result = await asyncio.to_thread(
        chosen.score_segments, payload, path=name, duration=duration, warnings=warnings, starts=starts,
        keep_segments=segments,
    )
    del payload
    row = result.to_row(state.settings["top_k"] if top_k is None else top_k)
    extra = {"tags": chosen.tags, "segments": row["segments"]} if segments else {}
    trim_heap()
    return {
        "model": mid,
        "task": chosen.task,
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


@router.get("/v1/tags", summary="The model's tags, thresholds and description")
async def list_tags(request: Request,
                    model: str | None = Query(default=None, description="the served model's id; default: the first")):
    state = _state(request)
    mid = pick_model(state, model)
    if isinstance(mid, JSONResponse):
        return mid
    chosen = state.taggers[mid]
    info = {k: v for k, v in state.infos[mid].items() if k != "id"}
    return {"tags": chosen.tags, "task": chosen.task,
            "thresholds": thresholds_to_json(chosen.thresholds),  # +inf (never on) as null
            "model": info, "id": mid}


@router.get("/v1/models", summary="The served models (the first is the default)")
async def list_models(request: Request):
    state = _state(request)
    return {"default": state.ids[0], "models": [state.infos[mid] for mid in state.ids]}


@router.post(
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
    state = _state(request)
    similarity = state.similarity
    if similarity is None:
        return error(404, "no_index", "this server has no similarity index; start it with "
                     "`musetag serve MODEL --similar-index EMBEDDINGS` (written by `musetag embed`)")
    got = await decode_upload(request, state.ids[0])
    if isinstance(got, JSONResponse):
        return got
    name, payload, duration, _warnings, _starts = got
    matches = await asyncio.to_thread(similarity.search_segments, payload, k)
    del payload
    trim_heap()
    return {
        "filename": name,
        "duration": None if duration is None else round(float(duration), 3),
        "matches": [m.to_dict() for m in matches],
        "index": similarity.describe(),
        "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 1),
    }


@router.get(
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
async def mood_search(request: Request,
                      tags: str = Query(..., description="comma-separated tags, optional :weight or -tag"),
                      k: int = Query(default=10, ge=1, le=1000)):
    from musetag.tag.similarity import parse_tag_weights

    moods = _state(request).moods
    if moods is None:
        return error(404, "no_index", "this server has no mood index; start it with "
                     "`musetag serve MODEL --mood-index SCORES` (tag scores written by `musetag tag --out`)")
    try:
        weights = parse_tag_weights(tags, flag="tags=")
        matches = moods.search_tags(weights, k, flag="tags=")
    except ConfigError as exc:
        return error(400, "unknown_tag" if "unknown tag" in str(exc) else "bad_query", str(exc))
    return {"query": weights, "matches": [m.to_dict() for m in matches], "tracks": len(moods.paths),
            "tags": len(moods.tags)}


@router.get("/healthz", summary="Liveness and readiness (open even when the server has an API key)")
async def healthz(request: Request):
    from musetag import __version__

    state = _state(request)
    queue = state.queue_for(state.model_pool[state.ids[0]])
    return {
        "status": "ok",
        "model": state.taggers[state.ids[0]].package.model_name,
        "models": state.ids,
        "decoders": state.settings["max_concurrency"] * len(state.pools),
        "idle_decoders": sum(pool.idle for pool in state.pools.values()),  # every front end's pool
        "queue": queue.describe(),  # the first model's (its front end's pool)
        "queues": {model: state.queue_for(state.model_pool[model]).describe() for model in state.ids},
        "auth": state.api_key is not None,
        "version": __version__,
    }


def static_router(static_dir) -> APIRouter:
    """``GET /``: the web page."""
    page = APIRouter()

    @page.get("/", include_in_schema=False)
    async def index():
        return FileResponse(static_dir / "index.html", media_type="text/html")

    return page
