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


class HostGuard:
    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = dict(scope.get("headers", ())).get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in self.allowed:
                body = json.dumps(
                    {
                        "error": {
                            "code": "invalid_host",
                            "message": "this Host is not served here (CONVEYOR_ALLOWED_HOSTS)",
                        }
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def add_browser_guards(app: FastAPI, settings: ApiSettings) -> None:
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
