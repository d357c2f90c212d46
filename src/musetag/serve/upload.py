"""Reading one uploaded audio file (multipart field ``file`` or the raw body) within the upload size
and body-time limits: 413 beyond ``max_upload_mb`` (checked on ``Content-Length`` and while reading),
408 when the body has not fully arrived ``body_timeout`` seconds after the request started, a client
that disconnects mid-upload logged in one line."""
from __future__ import annotations

import asyncio
import logging
import time

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from musetag.serve.responses import error

log = logging.getLogger("musetag.serve.app")
MULTIPART_SLACK = 64 * 1024  # multipart boundaries and headers on top of the file itself


async def _read_body(request: Request, limit: int, body_timeout: float, too_big: JSONResponse) -> bytes | JSONResponse:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                return too_big
        except ValueError:
            return error(400, "bad_request", f"invalid Content-Length header {length!r}")
    chunks, size = [], 0
    deadline = time.monotonic() + body_timeout
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
                    client, request.url.path, body_timeout, size, length or "?")
        return error(
            408, "body_timeout",
            f"the upload did not arrive within {body_timeout:g} s ({size} bytes received); send the whole file "
            "at once (the limit is set with --body-timeout)",
            headers={"Connection": "close"},
        )
    except ClientDisconnect:
        log.warning("%s %s: client disconnected during the upload after %d of %s bytes",
                    client, request.url.path, size, length or "?")
        return error(400, "client_disconnected", "the client disconnected before the upload was complete")
    return b"".join(chunks)


async def _multipart_file(request: Request, body: bytes, max_bytes: int, too_big: JSONResponse):
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=2, max_fields=20)
    except Exception as exc:  # noqa: BLE001 - malformed multipart is the client's problem
        return error(400, "bad_multipart", f"the multipart body could not be parsed: {exc}")
    files = [v for _, v in form.multi_items() if not isinstance(v, str)]
    if len(files) > 1:  # only one would be scored: say so rather than pick one
        await form.close()
        names = ", ".join(repr(f.filename or "") for f in files)
        return error(400, "several_files", f"the multipart upload holds {len(files)} files ({names}); send one file "
                                           "per request (in a field named 'file')")
    upload = files[0] if files else None
    if upload is None:
        return error(400, "missing_file", "the multipart upload has no file; send it in a field named 'file'")
    data = await upload.read()
    await form.close()
    if len(data) > max_bytes:
        return too_big
    if not data:
        return error(400, "empty_upload", f"the uploaded file {upload.filename or ''} is empty (0 bytes)")
    return upload.filename, data


def _header_text(value: str | None) -> str | None:
    """A header value as the client meant it: HTTP carries bytes, which Starlette reads as Latin-1, so a client that
    sent UTF-8 (``X-Filename: Séculaire.mp3``, as curl and browsers do) got ``SÃ©culaire.mp3`` back."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):  # really Latin-1 (or not text): kept as read
        return value


async def read_upload(request: Request, max_upload_mb: float, body_timeout: float) -> tuple[str, bytes] | JSONResponse:
    """``(filename, bytes)`` of the upload, or the JSON error to answer."""
    max_bytes = int(max_upload_mb * 1024 * 1024)
    is_multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    too_big = error(
        413,
        "upload_too_large",
        f"the upload is larger than the server's limit of {max_upload_mb:g} MB; send a shorter or "
        "more compressed file (the limit is set with --max-upload-mb)",
    )
    body = await _read_body(request, max_bytes + (MULTIPART_SLACK if is_multipart else 0), body_timeout, too_big)
    if isinstance(body, JSONResponse):
        return body
    name = request.query_params.get("filename") or _header_text(request.headers.get("x-filename")) or "upload"
    if is_multipart:
        got = await _multipart_file(request, body, max_bytes, too_big)
        if isinstance(got, JSONResponse):
            return got
        filename, data = got
        return filename or name, data
    if not body:
        return error(
            400, "empty_upload", "the request body is empty; send the audio file as the body or as "
            "a multipart field named 'file'"
        )
    return name, body
