"""``GET /v1/events/stream`` against the real stack: every transition arrives,
filters apply, ``Last-Event-ID`` resumes or says ``resync``, keys are checked."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

from tests.stack import ADMIN, Stack

pytestmark = pytest.mark.integration


async def collect(
    events: AsyncIterator[ServerSentEvent], until: Any, timeout: float = 30
) -> list[ServerSentEvent]:
    """Read events (pings are not events) until ``until(seen)`` holds."""
    seen: list[ServerSentEvent] = []

    async def read() -> None:
        async for sse in events:
            if sse.event == "message" and not sse.data:
                continue  # the opening comment with the reconnect delay
            seen.append(sse)
            if until(seen):
                return

    await asyncio.wait_for(read(), timeout)
    return seen


def kinds(seen: list[ServerSentEvent], job_id: str) -> list[str]:
    return [s.event for s in seen if s.event.startswith("job.") and s.json()["job_id"] == job_id]


async def open_stream(
    client: httpx.AsyncClient, params: dict[str, str] | None = None, **headers: str
) -> tuple[Any, EventSource]:
    cm = aconnect_sse(client, "GET", "/v1/events/stream", params=params, headers=headers)
    source = await cm.__aenter__()
    assert source.response.status_code == 200, await source.response.aread()
    assert source.response.headers["content-type"].startswith("text/event-stream")
    return cm, source


async def pump(events: AsyncIterator[ServerSentEvent], into: list[ServerSentEvent]) -> None:
    async for sse in events:
        into.append(sse)


async def until(seen: list[ServerSentEvent], holds: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not holds(seen):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_every_transition_of_a_job_arrives_in_order(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    cm, source = await open_stream(client)
    seen: list[ServerSentEvent] = []
    reader = asyncio.create_task(pump(source.aiter_sse(), seen))
    try:
        # Workers send live events once a watcher's fanout announcement reaches
        # them, a few ms after the stream opens: probe until a job.started arrives.
        for _ in range(10):
            probe = await stack.submit("echo")
            if await until(seen, lambda s, p=probe: "job.started" in kinds(s, p["id"]), 3):
                break
        else:
            raise AssertionError("live events never flowed")
        job = await stack.submit("fail", max_retries=1)
        # Live events leave in 100 ms batches and may trail the durable ones.
        assert await until(seen, lambda s: len(kinds(s, job["id"])) == 5, 30), seen
    finally:
        reader.cancel()
        await cm.__aexit__(None, None, None)
    # Each process sends its events in order, but the API's, the worker's durable
    # and its batched live events may cross; (attempt, step) orders them, and their
    # ``at`` (millisecond precision) agrees with that order.
    step = {"job.queued": 0, "job.started": 1, "job.retrying": 2, "job.completed": 2}
    by_time = sorted(
        (s for s in seen if s.event.startswith("job.") and s.json()["job_id"] == job["id"]),
        key=lambda s: (s.json()["attempt"], step[s.event]),
    )
    ats = [datetime.fromisoformat(s.json()["at"]) for s in by_time]
    assert ats == sorted(ats)
    assert [s.event for s in by_time] == [
        "job.queued",
        "job.started",
        "job.retrying",
        "job.started",
        "job.completed",
    ]
    mine = [s for s in seen if s.event.startswith("job.")]
    ids = [s.id for s in mine]
    assert all(ids)
    assert len(set(ids)) == len(ids)
    seqs = [int(i.rsplit("-", 1)[1]) for i in ids]
    assert seqs == sorted(seqs)
    done = by_time[-1].json()
    assert done["status"] == "completed"
    assert done["job_type"] == "fail"
    assert done["attempt"] == 2
    retrying = next(s.json() for s in by_time if s.event == "job.retrying")
    assert "planned failure" in retrying["error"]


async def test_filters_by_job_type_and_status(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    cm, source = await open_stream(client, {"type": "echo", "status": "completed,failed"})
    try:
        events = source.aiter_sse()
        other = await stack.submit("sleep", payload={"seconds": 0})
        await stack.wait_job(other["id"])
        job = await stack.submit("echo", payload={"n": 1})
        seen = await collect(events, lambda s: "job.completed" in kinds(s, job["id"]))
    finally:
        await cm.__aexit__(None, None, None)
    jobs = [s.json() for s in seen if s.event.startswith("job.")]
    assert jobs == [j for j in jobs if j["job_type"] == "echo" and j["status"] == "completed"]
    assert [j["job_id"] for j in jobs] == [job["id"]]


async def test_last_event_id_resumes_what_was_missed_or_asks_to_resync(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    cm, source = await open_stream(client)
    try:
        first = await stack.submit("echo")
        seen = await collect(
            source.aiter_sse(),
            lambda s: {"job.queued", "job.completed"} <= set(kinds(s, first["id"])),
        )
    finally:
        await cm.__aexit__(None, None, None)
    last_id = seen[-1].id
    # Disconnected: these happen while nobody reads this API's stream.
    missed = await stack.submit("echo")
    await stack.wait_job(missed["id"])
    cm, source = await open_stream(client, **{"Last-Event-ID": last_id})
    try:
        replayed = await collect(source.aiter_sse(), lambda s: len(kinds(s, missed["id"])) == 3)
    finally:
        await cm.__aexit__(None, None, None)
    assert sorted(kinds(replayed, missed["id"])) == ["job.completed", "job.queued", "job.started"]
    assert not kinds(replayed, first["id"])  # nothing seen before is sent again
    # An id this process never gave: the client must refetch instead.
    cm, source = await open_stream(client, **{"Last-Event-ID": "0000-5"})
    try:
        resync = await collect(source.aiter_sse(), lambda s: len(s) >= 1, timeout=10)
    finally:
        await cm.__aexit__(None, None, None)
    assert resync[0].event == "resync"
    assert "another API process" in resync[0].json()["reason"]


async def test_stream_needs_a_read_key_and_valid_filters(stack: Stack) -> None:
    await stack.start_api()
    assert stack.api_url is not None
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as anonymous:
        resp = await anonymous.get("/v1/events/stream")
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "unauthorized"
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10, headers=ADMIN) as client:
        resp = await client.get("/v1/events/stream", params={"status": "done"})
        assert resp.status_code == 422
        assert "unknown status done" in resp.json()["error"]["message"]
        resp = await client.get("/v1/events/stream", params={"job_id": "x" * 65})
        assert resp.status_code == 422
    metrics = (await stack.client.get("/metrics")).text
    assert "conveyor_api_stream_clients 0.0" in metrics
    assert json.dumps(None) == "null"
