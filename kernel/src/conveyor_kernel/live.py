"""Live job events for watchers (the API's event stream, the dashboard, the CLI).

The durable events of :mod:`conveyor_kernel.events` announce the transitions
that end an attempt, and they drive notifications. Watchers also want to see a
job queued, started and making progress. Those go to ``<ns>.live`` (topic,
routing key = kind) as transient messages, sent without waiting for a
confirm. A live event that is lost costs a watcher one row update; nothing else
depends on it.

They are sent only while someone watches, and in batches: all of a process's
events of the last ``BATCH_S`` in one message. A publish costs the sender and
the broker about as much as a small job's whole share of the API (measured:
-22 % end-to-end throughput when every job sent two messages). An API process with stream
clients announces it on the control fanout (:data:`WATCHING`, every
``ANNOUNCE_EVERY_S``, valid ``ANNOUNCE_TTL_S``); every process that emits
(:class:`LiveFeed`) listens and sends until the last announcement expires.

:class:`LiveEvent` is the one shape a watcher receives; the API's stream also
converts the durable events into it (:func:`from_job_event`).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from pydantic import BaseModel, ConfigDict

from conveyor_kernel.broker import BROKER_ERRORS
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import Job, JobStatus
from conveyor_kernel.topology import Topology, live_exchange_name

log = get_logger(__name__)

QUEUED = "job.queued"
STARTED = "job.started"
PROGRESS = "job.progress"
LIVE_KINDS = (QUEUED, STARTED, PROGRESS)
BATCH_ROUTING_KEY = "batch"
BATCH_S = 0.1  # live events of a process leave in one message per 100 ms
SEND_TIMEOUT_S = 1.0
WATCHING = "watching"  # control action: {"action": "watching", "for_s": ...}
ANNOUNCE_EVERY_S = 30.0
ANNOUNCE_TTL_S = 90.0


def watching_announcement() -> dict[str, object]:
    return {"action": WATCHING, "for_s": ANNOUNCE_TTL_S}


class Progress(BaseModel):
    """``job.progress``: the handler's report (the job's ``progress`` without ``at``)."""

    fraction: float
    message: str | None = None


class LiveEvent(BaseModel):
    """What a watcher sees of one transition."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: str
    job_id: str
    job_type: str
    status: JobStatus
    attempt: int
    at: datetime
    error: str | None = None
    progress: Progress | None = None


def queued(job: Job) -> LiveEvent:
    return LiveEvent(
        kind=QUEUED,
        job_id=job.id,
        job_type=job.type,
        status=job.status,
        attempt=job.next_attempt,
        at=job.updated_at,
    )


def started(job: Job, attempt: int, at: datetime) -> LiveEvent:
    return LiveEvent(
        kind=STARTED,
        job_id=job.id,
        job_type=job.type,
        status=JobStatus.RUNNING,
        attempt=attempt,
        at=at,
    )


def from_job_event(body: bytes) -> LiveEvent | None:
    """A durable event (``job.completed`` ...) as a watcher sees it."""
    try:
        event: dict[str, Any] = json.loads(body)
        job = event["job"]
        return LiveEvent(
            kind=str(event["type"]),
            job_id=job["id"],
            job_type=job["type"],
            status=job["status"],
            attempt=int(job["attempts"]),
            at=event["occurred_at"],
            error=job.get("error"),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring an event that is not a job event", body=body[:200])
        return None


class LiveFeed:
    """Publishes live events on its own confirm-less channel while someone watches;
    never raises."""

    def __init__(self, connection: AbstractRobustConnection, topology: Topology) -> None:
        self._connection = connection
        self._exchange_name = live_exchange_name(topology.namespace)
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._watched_until = 0.0  # monotonic
        self._pending: list[LiveEvent] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def watched(self) -> bool:
        return time.monotonic() < self._watched_until

    def watching_for(self, seconds: float) -> None:
        """Someone watches: send live events for the next ``seconds``."""
        self._watched_until = max(self._watched_until, time.monotonic() + min(seconds, 600.0))

    def on_control(self, body: dict[str, Any]) -> bool:
        """Handle a control message if it is a watching announcement."""
        if body.get("action") != WATCHING:
            return False
        try:
            self.watching_for(float(body["for_s"]))
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed watching announcement", body=str(body)[:200])
        return True

    async def open(self) -> None:
        self._channel = await self._connection.channel(publisher_confirms=False)
        self._exchange = await self._channel.get_exchange(self._exchange_name)

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await self._flusher
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    def emit(self, *events: LiveEvent) -> None:
        """Queue ``events``; they leave together with whatever else comes within
        ``BATCH_S`` (one message per batch, not one per event)."""
        if not events or not self.watched:
            return
        self._pending.extend(events)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(BATCH_S)
        batch, self._pending = self._pending, []
        exchange = self._exchange
        if not batch or exchange is None or self._channel is None or self._channel.is_closed:
            return
        body = b"[" + b",".join(e.model_dump_json().encode() for e in batch) + b"]"
        message = aio_pika.Message(body=body, content_type="application/json")
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await exchange.publish(message, routing_key=BATCH_ROUTING_KEY, mandatory=False)
        except BROKER_ERRORS as exc:
            log.debug("live events not sent", count=len(batch), error=str(exc))


def parse_batch(body: bytes) -> list[LiveEvent]:
    """A live message: a JSON array of events (malformed entries are skipped)."""
    try:
        items = json.loads(body)
    except ValueError:
        items = None
    if not isinstance(items, list):
        log.warning("ignoring a malformed live message", body=body[:200])
        return []
    events = []
    for item in items:
        try:
            events.append(LiveEvent.model_validate(item))
        except ValueError:
            log.warning("ignoring a malformed live event", item=str(item)[:200])
    return events
