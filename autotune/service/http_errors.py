"""Errors as the tuning service answers them: always a JSON body `{"error": ...}`, never a
traceback. Bounded request bodies (413), malformed requests (4xx), ember's own errors (400), and
a last resort that logs the traceback on the server and answers 500 with an incident id."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ember.errors import EmberError

__all__ = ["BodyLimit", "install_error_handlers"]

log = logging.getLogger(__name__)


class _TooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"error": f"request body over the server's limit of {limit:,} bytes (--max-upload-mb)"},
        status_code=413,
    )


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            response = _too_large(self.limit) if length.isdigit() else _bad_length()
            await response(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _too_large(self.limit)(scope, receive, send)


def _bad_length() -> JSONResponse:
    return JSONResponse({"error": "malformed Content-Length header"}, status_code=400)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure with a JSON error body."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(err.detail)}, status_code=err.status_code, headers=err.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in err.errors()
        ]
        where = ", ".join(".".join(str(p) for p in d["loc"]) + f": {d['msg']}" for d in detail)
        return JSONResponse({"error": f"malformed request: {where}", "detail": detail}, 422)

    @app.exception_handler(EmberError)
    async def ember_error(request: Request, err: EmberError) -> JSONResponse:
        return JSONResponse({"error": f"{type(err).__name__}: {err}"}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> Any:
        incident = uuid.uuid4().hex[:12]
        log.exception("incident %s: %s %s", incident, request.method, request.url.path)
        return JSONResponse(
            {"error": f"internal error (incident {incident}; the server log has the details)"},
            status_code=500,
        )
