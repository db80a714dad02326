"""Browser-facing guards: CORS only for listed origins, and a Host check.

The Host check stops DNS rebinding: a web page whose name is made to resolve to
127.0.0.1 reaches a local API with its own name in ``Host``, and gets a JSON
``400 invalid_host``. A form post cannot send ``Authorization``, so no page can
make a state change without a key either.
"""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor_api.settings import ApiSettings


def json_error(status: int, code: str, message: str) -> tuple[dict[str, object], bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json")],
    }
    return start, body


class UrlGuard:
    """A NUL in the path or query is a 400: no store takes it (FerretDB's
    PostgreSQL refuses NUL even in a query), so it must not get that far."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path", b"") + b"?" + scope.get("query_string", b"")
            if b"%00" in raw or b"\x00" in raw or "\x00" in scope.get("path", ""):
                start, body = json_error(400, "invalid_url", "NUL is not allowed in the URL")
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class HostGuard:
    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = dict(scope.get("headers", ())).get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in self.allowed:
                start, body = json_error(
                    400, "invalid_host", "this Host is not served here (CONVEYOR_ALLOWED_HOSTS)"
                )
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def add_browser_guards(app: FastAPI, settings: ApiSettings) -> None:
    app.add_middleware(UrlGuard)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            max_age=600,
        )
    if settings.trusted_hosts != ["*"]:
        app.add_middleware(HostGuard, allowed=settings.trusted_hosts)
