"""The labelling page's routes (``musetag label``), over a :class:`musetag.tag.label_session.LabelSession`.

``GET /v1/label/state``: tags, task, labels per tag, embedding progress and throughput, unreadable files.
``GET /v1/label/next?rule=active|random|folder&annotator=A&skip=P1&skip=P2``: the next track to label
(``{"path": null}`` while none is embedded yet or every track is labelled) with its predictions and label.
``POST /v1/label/label`` ``{"path", "tags": [...], "annotator"}``: appended to ``labels.csv`` and fsynced,
then the head is refit and every track rescored; answers the new state. ``POST /v1/label/undo``
``{"annotator"}``: revokes that annotator's last label. ``GET /v1/label/review?tag=T``: tracks by predicted
score. ``GET /v1/label/similar?path=P&k=10``: "more like this" (cosine on the embeddings).
``GET /v1/label/timeline?path=P``: the current head's per-window scores over the track (the body of
``POST /v1/tag?segments=true``: tags, scores, segments, duration), drawn by ``static/timeline.js``.
``GET /v1/label/audio?path=P``: the audio of an indexed track only (404 once it is gone). ``GET /v1/label/export``:
the manifest CSV (:mod:`musetag.tag.label_export`); ``POST /v1/label/export-package``: the backbone + head
package written to ``PROJECT_DIR/export/package`` (:mod:`musetag.tag.label_package`). ``GET /healthz`` (open) and ``GET /`` (the page).

Work that touches the model (label, undo, next, review) runs in a thread behind one
:class:`~musetag.serve.queue.WaitQueue` slot: a full queue or a wait past its limit gets 503 + Retry-After.
"""
from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from musetag.errors import MusetagError
from musetag.serve.queue import QueueFull, QueueRefused
from musetag.serve.responses import error
from musetag.tag.label_session import shown_path
from musetag.training.active import DEFAULT_RULE

router = APIRouter()


class LabelBody(BaseModel):
    path: str
    tags: list[str] = Field(default_factory=list, description="the tags that apply; empty: none of them")
    values: dict[str, float] | None = Field(None, description="regression projects: a value per target")
    annotator: str = ""


class UndoBody(BaseModel):
    annotator: str = ""


def _session(request: Request):
    return request.app.state.label_session


async def _queued(request: Request, fn, *args, **kwargs):
    queue = request.app.state.label_queue
    try:
        async with queue.slot():
            return await asyncio.to_thread(fn, *args, **kwargs)
    except QueueRefused as exc:
        how = "--queue" if isinstance(exc, QueueFull) else "--queue-timeout"
        return error(503, "busy", f"{exc}; retry in {exc.retry_after} s (the waiting requests are set with {how})",
                     headers={"Retry-After": str(exc.retry_after)})
    except MusetagError as exc:
        return error(400, "bad_request", str(exc))


def _unknown(path: str):
    return error(404, "unknown_track", f"{shown_path(path)} is not a track of this project; GET /v1/label/next "
                 "names them")


def _track(session, path: str | None, labels=None) -> dict:
    if path is None:
        return {"path": None, "predictions": [], "label": None}
    labels = session.labels() if labels is None else labels
    out = {"path": path, "predictions": session.predictions(path), "label": list(labels[path]) if path in labels else None}
    if session.project.task == "regression" and path in labels:
        from musetag.tag.label_session import parse_values

        out["values"] = dict(zip(session.tags, parse_values(labels[path], session.tags)))
    return out


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request):
    from musetag import __version__

    return {"status": "ok", "auth": request.app.state.api_key is not None, "version": __version__,
            "queue": request.app.state.label_queue.describe()}


@router.get("/v1/label/state", summary="Tags, labels per tag, embedding progress, unreadable files")
async def state(request: Request):
    try:
        return await asyncio.to_thread(_session(request).summary)
    except MusetagError as exc:  # labels.csv broken since the start: as every other route says it
        return error(400, "bad_request", str(exc))


@router.get("/v1/label/next", summary="The next track to label")
async def next_track(request: Request, rule: str = DEFAULT_RULE, annotator: str = "",
                     skip: list[str] = Query(default_factory=list)):
    """``rule`` defaults to the page's (:data:`musetag.training.active.DEFAULT_RULE`, random order)."""
    session = _session(request)

    def work():
        path = session.propose(rule, annotator, skip)
        return {**_track(session, path), "rule": rule, "state": session.summary()}

    return await _queued(request, work)


@router.post("/v1/label/label", summary="Label a track (appended and fsynced), refit, rescore")
async def label(request: Request, body: LabelBody):
    session = _session(request)
    if body.path not in session.path_set:  # as /audio and /timeline answer it
        return _unknown(body.path)

    def work():
        started = time.perf_counter()
        stored = session.label(body.path, body.tags, body.annotator, body.values)
        return {"saved": {"path": body.path, "tags": list(body.tags), "label": list(stored)},
                "refit_ms": round(1000 * (time.perf_counter() - started), 1), **_track(session, body.path),
                "state": session.summary()}

    return await _queued(request, work)


@router.post("/v1/label/undo", summary="Revoke the annotator's last label (a new line in labels.csv)")
async def undo(request: Request, body: UndoBody):
    session = _session(request)

    def work():
        path = session.undo(body.annotator)
        return {"undone": path, "state": session.summary(), **(_track(session, path) if path else {})}

    return await _queued(request, work)


@router.get("/v1/label/review", summary="Tracks sorted by the predicted score of one tag")
async def review(request: Request, tag: str, limit: int = Query(200, ge=1, le=10000)):
    session = _session(request)
    return await _queued(request, lambda: {"tag": tag, "tracks": session.review(tag, limit)})


@router.get("/v1/label/similar", summary="More like this: the nearest tracks in embedding space")
async def similar(request: Request, path: str, k: int = Query(10, ge=1, le=200)):
    session = _session(request)
    if path not in session.path_set:
        return _unknown(path)
    return await _queued(request, lambda: {"path": path, "tracks": session.similar(path, k)})


@router.get("/v1/label/timeline", summary="The current head's scores window by window over one track")
async def timeline(request: Request, path: str):
    session = _session(request)
    if path not in session.path_set:
        return _unknown(path)
    try:  # the backbone runs over the track (about a second): not behind the model's one slot
        return await asyncio.to_thread(session.timeline, path)
    except MusetagError as exc:
        return error(400, "bad_request", str(exc))


@router.get("/v1/label/audio", summary="The audio of one of the project's tracks")
async def audio(request: Request, path: str):
    session = _session(request)
    if path not in session.path_set:
        return _unknown(path)
    audio = session.project.folder / path
    try:  # one stat, handed to the response (which would stat again: a file removed in between gave a 500)
        st = os.stat(audio)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):  # moved or deleted since the server started
        return error(404, "missing_file", f"the file is gone: {shown_path(path)} is no longer in "
                     f"{session.project.folder} (moved or deleted since `musetag label` started); put it back, or "
                     "restart `musetag label` to scan the folder again")
    return FileResponse(audio, stat_result=st)


@router.get("/v1/label/export", summary="The labels as a manifest CSV (path,tags,split,group)")
async def export(request: Request):
    from musetag.tag.label_export import export_manifest

    session = _session(request)
    out = session.project.dir / "export" / "manifest.csv"
    try:
        result = await asyncio.to_thread(export_manifest, session.project, out)
    except MusetagError as exc:
        return error(400, "bad_request", str(exc))
    counts = result["splits"]
    headers = {"X-Musetag-Splits": f"train={counts['train']}; validation={counts['validation']}; test={counts['test']}"}
    if "note" in result:
        headers["X-Musetag-Note"] = result["note"].encode("ascii", "replace").decode()  # HTTP headers: Latin-1 only
    return FileResponse(out, media_type="text/csv", filename="manifest.csv", headers=headers)


@router.post("/v1/label/export-package", summary="Write the backbone + head package into PROJECT_DIR/export/package")
async def export_package(request: Request):
    from musetag.tag.label_package import export_package as write_package

    session = _session(request)
    out = session.project.dir / "export" / "package"
    report: dict = {}
    result = await _queued(request, write_package, session.project, out, report=report)
    if not isinstance(result, Path):
        return result  # an error response
    return {"path": str(result), "run": f"musetag tag {result} FILES", "note": report.get("note", "")}
