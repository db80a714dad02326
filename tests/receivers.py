"""Real receivers for notifications: an HTTP endpoint (pytest-httpserver) and SMTP (aiosmtpd)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

Reply = Response | Callable[[Request], Response]


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: str


@dataclass
class Receiver:
    """``POST`` endpoint that records every request and answers from a script (then 200)."""

    server: HTTPServer
    path: str = "/hook"
    replies: list[Reply] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server.expect_request(self.path, method="POST").respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return str(self.server.url_for(self.path))

    def _handle(self, request: Request) -> Response:
        self.requests.append(
            Received(time.time(), dict(request.headers), request.get_data(as_text=True))
        )
        if not self.replies:
            return Response("ok", status=200)
        reply = self.replies.pop(0)
        return reply if isinstance(reply, Response) else reply(request)

    async def wait_for(self, count: int, timeout: float = 60) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)}/{count} requests arrived"
            await asyncio.sleep(0.05)
        return self.requests


@dataclass
class Mailbox:
    """aiosmtpd handler keeping every accepted message; ``replies`` scripts DATA answers."""

    replies: list[str] = field(default_factory=list)
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[Any] = field(default_factory=list)

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.replies:
            return self.replies.pop(0)
        raw = envelope.original_content or envelope.content or b""
        assert isinstance(raw, bytes)
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        if session.authenticated:
            self.logins.append(session.auth_data)
        return "250 OK"

    async def wait_for(
        self, count: int, timeout: float = 60
    ) -> list[tuple[Envelope, EmailMessage]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)}/{count} emails arrived"
            await asyncio.sleep(0.05)
        return self.messages
