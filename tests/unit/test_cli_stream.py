"""The CLI's event stream reader, waiting and error mapping, against a fake API (no network)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx
import pytest

from conveyor_cli import stream
from conveyor_cli.client import (
    EXIT_AUTH,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Client,
    Settings,
    error_for,
)

SETTINGS = Settings(url="http://conveyor.test", api_key="k", timeout=5, json=True)


def sse(*blocks: str) -> httpx.Response:
    body = "".join(f"{b}\n\n" for b in blocks)
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


def event(event_id: str, kind: str, status: str, job_id: str = "j1") -> str:
    data = {"kind": kind, "job_id": job_id, "job_type": "echo", "status": status, "attempt": 1}
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}"


def client_with(handler: Any) -> Client:
    client = Client(SETTINGS)
    client.http = httpx.AsyncClient(
        base_url=SETTINGS.url,
        transport=httpx.MockTransport(handler),
        headers={"Authorization": "Bearer k"},
    )
    return client


async def test_reconnects_with_last_event_id_and_skips_unknown_blocks() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("last-event-id"))
        assert request.url.params["type"] == "echo"
        assert request.url.params["status"] == "running,completed"
        if len(seen) == 1:
            return sse(
                ": conveyor event stream\nretry: 2000", event("e-1", "job.started", "running")
            )
        return sse(
            'event: resync\ndata: {"reason": "gap"}', event("e-2", "job.completed", "completed")
        )

    async with client_with(handler) as client:
        got: list[stream.Event] = []
        gen = stream.events(client, job_type="echo", statuses=["running", "completed"])
        async with contextlib.aclosing(gen) as events:
            async for ev in events:
                got.append(ev)
                if len(got) == 5:
                    break
    assert [e.kind for e in got] == ["open", "job.started", "open", "resync", "job.completed"]
    assert seen == [None, "e-1"]
    assert got[1].as_json()["status"] == "running"
    assert got[3].data == {"reason": "gap"}


async def test_wait_reads_the_job_on_open_and_finishes_on_a_terminal_event() -> None:
    gets = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal gets
        if request.url.path == "/v1/events/stream":
            assert request.url.params["job_id"] == "j1"
            return sse(
                event("e-1", "job.started", "running"), event("e-2", "job.completed", "completed")
            )
        gets += 1
        status = "queued" if gets == 1 else "completed"
        return httpx.Response(200, json={"id": "j1", "status": status, "result": {"ok": True}})

    updates: list[str] = []
    async with client_with(handler) as client:
        job = await stream.wait_for_job(client, "j1", updates.append)
    assert job["result"] == {"ok": True}
    assert updates == ["queued", "running (attempt 1)", "completed (attempt 1)"]


async def test_wait_polls_when_the_server_has_no_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "POLL_INTERVAL_S", 0.01)
    statuses = iter(["queued", "running", "failed"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/events/stream":
            return httpx.Response(
                404, json={"error": {"code": "not_found", "message": "Not Found"}}
            )
        return httpx.Response(200, json={"id": "j1", "status": next(statuses), "attempts": []})

    async with client_with(handler) as client:
        job = await stream.wait_for_job(client, "j1", lambda _: None)
    assert job["status"] == "failed"


async def test_first_connection_failure_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with client_with(handler) as client:
        with pytest.raises(stream.ConveyorError) as caught:
            await anext(stream.events(client))
    assert caught.value.exit_code == EXIT_UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "exit_code"),
    [
        (400, EXIT_USAGE),
        (401, EXIT_AUTH),
        (403, EXIT_AUTH),
        (404, EXIT_NOT_FOUND),
        (409, EXIT_USAGE),
        (422, EXIT_USAGE),
        (429, EXIT_UNAVAILABLE),
        (503, EXIT_UNAVAILABLE),
    ],
)
def test_error_mapping(status: int, exit_code: int) -> None:
    body = {"error": {"code": "c", "message": "m", "known_types": ["echo"]}}
    error = error_for(httpx.Response(status, json=body))
    assert error.exit_code == exit_code
    assert error.as_json()["error"] == {"code": "c", "message": "m", "known_types": ["echo"]}
    assert error_for(httpx.Response(status, text="<html>")).exit_code == exit_code
