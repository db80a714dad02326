"""``GET /v1/events/stream``: every job transition as Server-Sent Events.

Fed by :class:`conveyor_api.stream.StreamHub` from RabbitMQ, never by polling
the store. Heartbeat comments (``: ping``) keep proxies from closing an idle
stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from conveyor_api.auth import Read
from conveyor_api.problems import ApiError
from conveyor_api.state import State
from conveyor_api.stream import Filters, Subscriber
from conveyor_kernel.live import LiveEvent
from conveyor_kernel.model import JOB_TYPE_PATTERN, JobStatus

router = APIRouter(prefix="/v1", tags=["events"])

RETRY_MS = 2000
STATUSES = {s.value for s in JobStatus}


def filters(
    job_id: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    type: Annotated[  # noqa: A002 - the query parameter's public name
        str | None, Query(max_length=100, pattern=JOB_TYPE_PATTERN)
    ] = None,
    status: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Comma-separated statuses (e.g. `completed,failed`)",
        ),
    ] = None,
) -> Filters:
    wanted = frozenset(s.strip() for s in status.split(",") if s.strip()) if status else frozenset()
    unknown = sorted(wanted - STATUSES)
    if unknown:
        raise ApiError(
            422,
            "validation_error",
            f"unknown status {', '.join(unknown)}; one of {', '.join(sorted(STATUSES))}",
        )
    return Filters(job_id=job_id, job_type=type, statuses=wanted)


async def subscription(
    state: State,
    wanted: Annotated[Filters, Depends(filters)],
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> AsyncIterator[Subscriber]:
    """Subscribed before the response starts (an event right after the client sees
    the headers is not missed); unsubscribed once the stream ends."""
    sub = await state.stream.subscribe(wanted, last_event_id)
    state.metrics.stream_clients.inc()
    try:
        yield sub
    finally:
        state.metrics.stream_clients.dec()
        state.stream.unsubscribe(sub)


@router.get(
    "/events/stream",
    response_class=EventSourceResponse,
    dependencies=[Read],
    responses={503: {"description": "The broker is unavailable"}},
)
async def stream(
    state: State, sub: Annotated[Subscriber, Depends(subscription)]
) -> AsyncIterable[ServerSentEvent]:
    """Job transitions as they happen: `job.queued`, `job.started`, `job.progress`,
    `job.retrying`, `job.completed`, `job.failed`, `job.cancelled`.

    Each event has an `id`; reconnect with `Last-Event-ID` to get what was missed,
    or a `resync` event when that is no longer known (then refetch). A client that
    reads too slowly gets `dropped` and the stream ends. Filters: `job_id`, `type`,
    `status` (comma-separated).
    """
    hub = state.stream
    yield ServerSentEvent(comment="conveyor event stream", retry=RETRY_MS)
    if sub.resync is not None:
        yield ServerSentEvent(event="resync", data={"reason": sub.resync})
        sub.resync = None
    for numbered in sub.replay:
        yield _sse(hub.event_id(numbered.seq), numbered.event)
    sub.replay = []
    while True:
        item = await sub.queue.get()
        if item is not None:
            yield _sse(hub.event_id(item.seq), item.event)
        elif sub.dropped:
            yield ServerSentEvent(
                event="dropped", data={"reason": "the client read too slowly; reconnect"}
            )
            return
        elif sub.resync is not None:
            yield ServerSentEvent(event="resync", data={"reason": sub.resync})
            sub.resync = None


def _sse(event_id: str, event: LiveEvent) -> ServerSentEvent:
    return ServerSentEvent(id=event_id, event=event.kind, data=event)
