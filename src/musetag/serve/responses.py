"""The service's one error format: every error is a JSON body ``{"error": code, "message": text}``
with a 4xx/5xx status (:func:`error`), including FastAPI's own validation and HTTP errors
(:func:`install_error_handlers`). Shared by every route set built on this stack."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("musetag.serve.app")


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": code, "message": message}`` with ``status`` (and ``headers``)."""
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _not_json(err: dict, body) -> str:
    """What is wrong with a body that is not JSON, and where (line and column)."""
    pos = err.get("loc", ("body", 0))[-1]
    why = (err.get("ctx") or {}).get("error", "JSON decode error")
    where = ""
    if isinstance(body, str) and isinstance(pos, int):
        line, column = body.count("\n", 0, pos) + 1, pos - body.rfind("\n", 0, pos)
        where = f" at line {line}, column {column}"
    return (f"the request body is not valid JSON ({why}{where}); send a JSON object with "
            "Content-Type: application/json")


async def _validation(request: Request, exc: RequestValidationError):
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            parts.append(_not_json(err, exc.body))
            continue
        loc = tuple(err.get("loc", ()))
        where = ".".join(str(p) for p in loc if p not in ("query", "body"))
        if not where:  # the body as a whole: missing, or not a JSON object
            where = "the request body (a JSON object)" if "body" in loc else "the request"
        parts.append(f"{where}: {err.get('msg')}")
    return error(400, "bad_request", "; ".join(parts) or "invalid request")


async def _http(request: Request, exc: StarletteHTTPException):
    return error(exc.status_code, "http_error", str(exc.detail), getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception):  # pragma: no cover - last resort
    log.exception("unexpected error on %s", request.url.path)
    return error(500, "internal_error", f"{type(exc).__name__}: {exc}")


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation errors (400), HTTP errors and unexpected exceptions (500) in the JSON format."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
