"""Machine-readable error bodies: ``{"error": {"code", "message", ...}}`` for every 4xx/5xx."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor_kernel.errors import (
    BrokerUnavailableError,
    DocumentRefusedError,
    StoreUnavailableError,
)
from conveyor_kernel.listing import InvalidCursorError
from conveyor_kernel.logs import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}

    def with_headers(self, headers: dict[str, str]) -> ApiError:
        self.headers = headers
        return self


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(code, message, **extra))


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message, **exc.extra)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return error_response(422, "validation_error", "request is not valid", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(InvalidCursorError)
    async def _cursor(_: Request, exc: InvalidCursorError) -> JSONResponse:
        return error_response(400, "invalid_cursor", str(exc))

    # 503s say what is down, never the driver's words or a document (they go to the log).
    @app.exception_handler(BrokerUnavailableError)
    async def _broker(_: Request, exc: BrokerUnavailableError) -> JSONResponse:
        log.warning("broker unavailable", error=str(exc))
        return error_response(
            503, "broker_unavailable", "the message broker is unavailable; nothing was accepted"
        )

    @app.exception_handler(StoreUnavailableError)
    async def _store(_: Request, exc: StoreUnavailableError) -> JSONResponse:
        log.warning("store unavailable", error=str(exc))
        return error_response(
            503, "store_unavailable", "the job store is unavailable; nothing was accepted"
        )

    @app.exception_handler(DocumentRefusedError)
    async def _refused(_: Request, exc: DocumentRefusedError) -> JSONResponse:
        log.warning("store refused a document", error=str(exc)[:500])
        return error_response(
            422, "document_refused", "the store refused the document (invalid or too large)"
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", error_type=type(exc).__name__, exc_info=exc)
        return error_response(500, "internal_error", "unexpected server error (logged)")
