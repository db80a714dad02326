"""Job events: what a transition announces, and how it reaches the broker without loss.

A transition that finishes an attempt (``completed``, ``retrying``, ``failed``,
``cancelled``) produces one event with a deterministic id
(``<job>.<attempts>.<kind>``), added to the job's ``emitted`` list by the
transition's own write and published (persistent, confirmed) after it
(:mod:`conveyor_kernel.commit`). A worker needs nothing more: it acks the
message only after the event is confirmed, so a redelivery re-sends it. A
writer holding no message (the API) *stages* the event first in the
``event_outbox``; if it dies before publishing, the relay publishes the entry
once older than the outbox grace period - but only if the job's ``emitted``
list proves the transition happened; entries of transitions that lost their
CAS are dropped. Consumers de-duplicate on the event id.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pymongo import AsyncMongoClient, IndexModel

from conveyor_kernel.broker import Publisher
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.eventgate import EventGate
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import Job, JobStatus, utcnow
from conveyor_kernel.mongo import Document, create_missing_indexes, store_errors
from conveyor_kernel.notify_spec import EventType, NotifySpec
from conveyor_kernel.runtime import retry_until_ready
from conveyor_kernel.settings import ConveyorSettings
from conveyor_kernel.store import JobStore

EVENT_OUTBOX_COLLECTION = "event_outbox"
MAX_RESULT_BYTES = 16_384
ORPHAN_AGE = timedelta(minutes=10)  # a staged event whose transition never landed

log = get_logger(__name__)

_KIND_OF_STATUS = {
    JobStatus.COMPLETED: EventType.COMPLETED,
    JobStatus.FAILED: EventType.FAILED,
    JobStatus.RETRYING: EventType.RETRYING,
    JobStatus.CANCELLED: EventType.CANCELLED,
}


class JobSummary(BaseModel):
    """The job as an event (and a webhook's ``data``) shows it."""

    id: str
    type: str
    status: JobStatus
    priority: int
    attempts: int
    max_retries: int
    error: str | None
    result: Any = None
    result_omitted: bool = False
    created_at: datetime
    finished_at: datetime | None
    next_attempt_at: datetime | None
    url: str


class JobEvent(BaseModel):
    """The versioned event message on ``<ns>.events``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    id: str
    type: EventType
    occurred_at: datetime
    job: JobSummary
    notify: NotifySpec | None = None

    def webhook_body(self) -> str:
        """The Standard Webhooks payload: ``{"type", "timestamp", "data"}``."""
        return json.dumps(
            {
                "type": self.type.value,
                "timestamp": self.occurred_at.isoformat().replace("+00:00", "Z"),
                "data": self.job.model_dump(mode="json"),
            },
            separators=(",", ":"),
        )


def event_kind(job: Job) -> EventType | None:
    """The type of the event ``job``'s current state announces, if any."""
    return _KIND_OF_STATUS.get(job.status)


def job_event(job: Job, public_url: str) -> JobEvent | None:
    """The event ``job``'s current state announces, if any."""
    kind = event_kind(job)
    if kind is None:
        return None
    result, omitted = job.result, False
    if result is not None and len(json.dumps(result, default=str)) > MAX_RESULT_BYTES:
        result, omitted = None, True
    summary = JobSummary(
        id=job.id,
        type=job.type,
        status=job.status,
        priority=job.priority,
        attempts=len(job.attempts),
        max_retries=job.max_retries,
        error=job.error,
        result=result,
        result_omitted=omitted,
        created_at=job.created_at,
        finished_at=job.finished_at,
        next_attempt_at=job.next_attempt_at,
        url=f"{public_url.rstrip('/')}/v1/jobs/{job.id}",
    )
    return JobEvent(
        id=f"{job.id}.{len(job.attempts)}.{kind.value.removeprefix('job.')}",
        type=kind,
        occurred_at=job.updated_at,
        job=summary,
        notify=job.notify,
    )


class Events:
    """Stages, publishes and relays job events (one per process)."""

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        db_name: str,
        publisher: Publisher,
        *,
        public_url: str,
        enabled: bool = True,
        gate: EventGate | None = None,
    ) -> None:
        self._col = client[db_name][EVENT_OUTBOX_COLLECTION]
        self._publisher = publisher
        self.public_url = public_url
        self.enabled = enabled
        self.gate = gate  # None: publish every event (the API's rare transitions)

    @classmethod
    async def open(
        cls,
        client: AsyncMongoClient[Document],
        settings: ConveyorSettings,
        publisher: Publisher,
        gate: EventGate | None = None,
    ) -> Events:
        """As configured by ``settings``, with its indexes in place (waits for MongoDB)."""
        events = cls(
            client,
            settings.mongodb_db,
            publisher,
            public_url=settings.public_url,
            enabled=settings.events_enabled,
            gate=gate,
        )
        await retry_until_ready("mongodb", events.ensure_indexes, (StoreUnavailableError,))
        return events

    async def ensure_indexes(self) -> None:
        await create_missing_indexes(self._col, [IndexModel("created_at")])

    def new_event(self, job: Job) -> JobEvent | None:
        """The event ``job``'s state announces, unless off, already emitted or wanted
        by nobody (:mod:`conveyor_kernel.eventgate`)."""
        if not self.enabled:
            return None
        if self.gate is not None:
            kind = event_kind(job)
            if kind is None or not self.gate.wants(job, kind):
                return None
        event = job_event(job, self.public_url)
        return None if event is None or event.id in job.emitted else event

    def with_event(self, job: Job) -> tuple[Job, JobEvent | None]:
        """``job`` with the id of the event its state announces on ``emitted``, and
        that event (``None`` if there is none to send)."""
        event = self.new_event(job)
        if event is None:
            return job, None
        return job.model_copy(update={"emitted": [*job.emitted, event.id]}), event

    async def stage(self, job: Job) -> Job:
        """The outbox entry for ``job``'s event, and its id on the job (before a CAS)."""
        job, event = self.with_event(job)
        if event is not None:
            await self.stage_event(job.id, event)
        return job

    async def stage_event(self, job_id: str, event: JobEvent) -> None:
        async with store_errors():
            # The body is overwritten: when a CAS round loses and the next one stages
            # the same event again, the body of the round that wins is the one kept.
            await self._col.update_one(
                {"_id": event.id},
                {
                    "$set": {"body": event.model_dump_json()},
                    "$setOnInsert": {
                        "job_id": job_id,
                        "type": event.type.value,
                        "created_at": utcnow(),
                    },
                },
                upsert=True,
            )

    async def publish(self, event: JobEvent, *, staged: bool) -> None:
        """Publish ``event`` (confirmed); drop its outbox entry if it was ``staged``."""
        await self._send(event.id, event.type.value, event.model_dump_json(), staged=staged)

    async def _send(self, event_id: str, event_type: str, body: str, *, staged: bool) -> None:
        await self._publisher.publish_event(body.encode(), event_type, event_id)
        if staged:
            async with store_errors():
                await self._col.delete_one({"_id": event_id})

    async def relay_once(self, store: JobStore, grace_s: float, batch: int = 500) -> int:
        """Publish staged events older than ``grace_s`` whose transition happened."""
        now = utcnow()
        async with store_errors():
            entries: list[Document] = (
                await self._col.find({"created_at": {"$lt": now - timedelta(seconds=grace_s)}})
                .sort("created_at", 1)
                .limit(batch)
                .to_list()
            )
        sent = 0
        for entry in entries:
            job = await store.get(entry["job_id"])
            if job is None or entry["_id"] not in job.emitted:
                if job is None or entry["created_at"] < now - ORPHAN_AGE:
                    async with store_errors():
                        await self._col.delete_one({"_id": entry["_id"]})
                continue
            await self._send(entry["_id"], entry["type"], entry["body"], staged=True)
            sent += 1
            log.info("events: re-sent a stranded event", event_id=entry["_id"], job_id=job.id)
        return sent
