"""Live job events for watchers (the API's event stream, the dashboard, the CLI).

The durable events of :mod:`conveyor_kernel.events` announce the transitions
that end an attempt, and they drive notifications. Watchers also want to see a
job queued, started and making progress. Those go to ``<ns>.live`` (topic,
routing key = kind) as transient messages, sent without waiting for a
confirm. A live event that is lost costs a watcher one row update; nothing else
depends on it.

They are sent only while someone watches: a publish costs the sender and the
broker about as much as a small job's whole share of the API (measured: -22 %
end-to-end throughput when every job sent two). An API process with stream
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
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def emit(self, *events: LiveEvent) -> None:
        if not events or not self.watched:
            return
        exchange = self._exchange
        if exchange is None or self._channel is None or self._channel.is_closed:
            return
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                for event in events:
                    message = aio_pika.Message(
                        body=event.model_dump_json().encode(),
                        content_type="application/json",
                        type=event.kind,
                    )
                    await exchange.publish(message, routing_key=event.kind, mandatory=False)
        except BROKER_ERRORS as exc:
            log.debug("live event not sent", error=str(exc))
