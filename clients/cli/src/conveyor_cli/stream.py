"""The job event stream (``GET /v1/events/stream``, Server-Sent Events) and waiting on a job.

:func:`events` yields the stream's events and reconnects with ``Last-Event-ID``
when the connection drops, the server ends it, or it sends ``dropped`` (this
client was too slow). It yields a synthetic ``open`` event each time a
connection is established, so a caller can re-read state it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from conveyor_cli.client import (
    Client,
    ConveyorError,
    UnavailableError,
    error_for,
    transport_error,
)
from conveyor_cli.output import TERMINAL

STREAM_PATH = "/v1/events/stream"
MIN_READ_TIMEOUT_S = 45.0  # the server sends ": ping" comments well within this
RECONNECT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
RECONNECT_GIVE_UP_S = 30.0  # consecutive failures for this long: the API is unavailable
POLL_INTERVAL_S = 0.5
OPEN = "open"
SERVER_KINDS = frozenset({"resync", "dropped"})
CONTROL_KINDS = SERVER_KINDS | {OPEN}


class StreamUnavailableError(ConveyorError):
    """The server has no event stream (``404``): callers may poll instead."""

    exit_code = UnavailableError.exit_code


@dataclass(frozen=True)
class Event:
    kind: str
    id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.kind, **self.data}


def _params(job_id: str | None, job_type: str | None, statuses: list[str] | None) -> dict[str, str]:
    params = {"job_id": job_id, "type": job_type}
    found = {k: v for k, v in params.items() if v}
    if statuses:
        found["status"] = ",".join(statuses)
    return found


def _decode(data: str) -> dict[str, Any]:
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        return {"raw": data}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


async def events(
    client: Client,
    *,
    job_id: str | None = None,
    job_type: str | None = None,
    statuses: list[str] | None = None,
) -> AsyncGenerator[Event, None]:
    """Events until the caller stops; raises if the first connection fails."""
    params = _params(job_id, job_type, statuses)
    read_s = max(MIN_READ_TIMEOUT_S, client.settings.timeout * 3)
    timeout = httpx.Timeout(client.settings.timeout, read=read_s)
    last_id: str | None = None
    connected_once = False
    failing_since: float | None = None
    failures = 0
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            async with aconnect_sse(
                client.http, "GET", STREAM_PATH, params=params, headers=headers, timeout=timeout
            ) as source:
                response = source.response
                if response.status_code == 404:
                    await response.aread()
                    error = error_for(response)
                    raise StreamUnavailableError(
                        "this API has no event stream (GET /v1/events/stream is 404)",
                        status=404,
                        code=error.code,
                        body=error.body,
                    )
                if not response.is_success:
                    await response.aread()
                    raise error_for(response)
                connected_once, failing_since, failures = True, None, 0
                yield Event(OPEN)
                async for sse in source.aiter_sse():
                    if sse.id:
                        last_id = sse.id
                    if not sse.event.startswith("job.") and sse.event not in SERVER_KINDS:
                        continue  # e.g. the opening ``retry:`` block, or a kind unknown here
                    yield Event(sse.event, sse.id or None, _decode(sse.data))
                    if sse.event == "dropped":
                        break
            # The server ended the stream: reconnect at once (resuming after last_id).
            await asyncio.sleep(RECONNECT_BACKOFF_S[0])
            continue
        except (httpx.TransportError, SSEError) as exc:
            if not connected_once:
                if isinstance(exc, httpx.TransportError):
                    raise transport_error(exc, client.settings.url) from exc
                raise UnavailableError(f"not an event stream: {exc}") from exc
            problem: ConveyorError = (
                transport_error(exc, client.settings.url)
                if isinstance(exc, httpx.TransportError)
                else UnavailableError(str(exc))
            )
        except UnavailableError as exc:  # 5xx / 429
            if not connected_once:
                raise
            problem = exc
        now = time.monotonic()
        failing_since = failing_since or now
        if now - failing_since > RECONNECT_GIVE_UP_S:
            raise problem
        await asyncio.sleep(RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S) - 1)])
        failures += 1


def describe(data: dict[str, Any]) -> str:
    """One line about a job (or a job event): ``running (attempt 2) 40% message``."""
    status = str(data.get("status", "?"))
    attempts = data.get("attempts")
    attempt = len(attempts) if isinstance(attempts, list) else data.get("attempt")
    text = f"{status} (attempt {attempt})" if attempt else status
    progress = data.get("progress")
    if isinstance(progress, dict) and progress.get("fraction") is not None:
        text += f" {float(progress['fraction']):.0%}"
        if progress.get("message"):
            text += f" {progress['message']}"
    return text


async def poll_job(client: Client, job_id: str, on_update: Callable[[str], None]) -> dict[str, Any]:
    while True:
        job = await client.job(job_id)
        on_update(describe(job))
        if job.get("status") in TERMINAL:
            return job
        await asyncio.sleep(POLL_INTERVAL_S)


async def wait_for_job(
    client: Client, job_id: str, on_update: Callable[[str], None]
) -> dict[str, Any]:
    """The job once it is terminal: from its event stream, else by polling every 0.5 s.

    The stream opens after the submit, so each time it (re)connects the job is read
    once, catching a transition that happened before or between connections.
    """
    try:
        async with contextlib.aclosing(events(client, job_id=job_id)) as stream:
            async for event in stream:
                if event.kind in (OPEN, "resync"):
                    job = await client.job(job_id)
                    on_update(describe(job))
                    if job.get("status") in TERMINAL:
                        return job
                elif event.data.get("job_id") == job_id:
                    on_update(describe(event.data))
                    if event.data.get("status") in TERMINAL:
                        return await client.job(job_id)
    except (StreamUnavailableError, UnavailableError):
        pass  # no stream here, or it failed (5xx, lost for good): polling still works
    return await poll_job(client, job_id, on_update)
