"""BodySizeLimit, driven as a raw ASGI app (no server)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from conveyor_api.limits import BodySizeLimit

LIMIT = 100


class Inner:
    """Reads the whole body, answers 200 with the byte count."""

    def __init__(self, *, swallow_errors: bool = False) -> None:
        self.called = False
        self.swallow_errors = swallow_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True
        if scope["type"] != "http":
            await send({"type": "lifespan.passthrough"})
            return
        try:
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
        except Exception:
            if not self.swallow_errors:
                raise
            # Like a framework: turn the error into its own 500.
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"internal"})
            return
        payload = json.dumps({"received": len(body)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": payload})


async def run(
    chunks: list[bytes], *, content_length: int | None = None, inner: Inner | None = None
) -> tuple[list[Message], Inner]:
    inner = inner or Inner()
    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/jobs",
        "headers": headers,
    }
    incoming: list[Message] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await BodySizeLimit(inner, max_bytes=LIMIT)(scope, receive, send)
    return sent, inner


def status_of(sent: list[Message]) -> int:
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, f"expected exactly one response start, got {sent}"
    return int(starts[0]["status"])


def body_of(sent: list[Message]) -> Any:
    return json.loads(
        b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    )


def assert_413(sent: list[Message]) -> None:
    assert status_of(sent) == 413
    err = body_of(sent)["error"]
    assert err["code"] == "payload_too_large"
    assert err["limit_bytes"] == LIMIT
    assert str(LIMIT) in err["message"]
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(sent[-1]["body"])


async def test_over_limit_by_content_length_is_rejected_before_the_app() -> None:
    sent, inner = await run([b"x" * (LIMIT + 1)], content_length=LIMIT + 1)
    assert_413(sent)
    assert inner.called is False


async def test_content_length_lie_is_still_caught_by_counting() -> None:
    sent, _ = await run([b"x" * 60, b"x" * 60], content_length=10)
    assert_413(sent)


async def test_chunked_over_limit_is_rejected() -> None:
    sent, inner = await run([b"a" * 40, b"b" * 40, b"c" * 40])
    assert_413(sent)
    assert inner.called is True


async def test_chunked_over_limit_when_app_swallows_error_still_413() -> None:
    sent, _ = await run([b"a" * 60, b"b" * 60], inner=Inner(swallow_errors=True))
    assert_413(sent)


@pytest.mark.parametrize(
    ("chunks", "content_length"),
    [
        ([b"x" * 10], 10),
        ([b"x" * LIMIT], LIMIT),  # exactly at the limit
        ([b"a" * 50, b"b" * 50], None),  # chunked, exactly at the limit
        ([b"", b"a" * 30, b"b" * 30], None),
        ([b""], 0),
    ],
)
async def test_under_limit_passes_through(chunks: list[bytes], content_length: int | None) -> None:
    sent, inner = await run(chunks, content_length=content_length)
    assert inner.called
    assert status_of(sent) == 200
    assert body_of(sent) == {"received": sum(len(c) for c in chunks)}


async def test_non_http_scope_passes_through() -> None:
    inner = Inner()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    await BodySizeLimit(inner, max_bytes=LIMIT)({"type": "lifespan"}, receive, send)
    assert inner.called
    assert sent == [{"type": "lifespan.passthrough"}]
