"""The transactional outbox: no accepted job is left without a message.

Before the API publishes messages it did not receive (new jobs, a redrive), a
group entry ``{entries: [{job_id, attempt}, ...]}`` goes into the ``outbox``
collection; after the broker confirms them all, the group is deleted. If the
publisher dies in between, the group stays, and the relay (run by the API and
by every worker) publishes its entries once older than ``grace_s``, after
checking each job still waits for that attempt. A duplicate message is
harmless: the worker skips a message whose attempt already finished.

A worker needs no outbox for the messages it publishes (a retry, a parked
copy, an event): it holds the message that caused them, unacked, until they
are confirmed; if it dies first, the redelivered message repairs them
(:mod:`conveyor_kernel.machine`).

The entry lives in its own collection rather than as a flag on the job so that
the job document keeps a single writer (see :mod:`conveyor_kernel.store`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient, IndexModel

from conveyor_kernel.broker import Publisher
from conveyor_kernel.errors import BrokerUnavailableError, StoreUnavailableError
from conveyor_kernel.events import Events
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import Job, utcnow
from conveyor_kernel.mongo import Document, create_missing_indexes, store_errors
from conveyor_kernel.store import JobStore

OUTBOX_COLLECTION = "outbox"

log = get_logger(__name__)


class Outbox:
    """Entries are written per *group*: one document names every message one
    write published (a group commit of submissions, a redrive), so the outbox
    costs one insert and one delete per group, not per job."""

    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._col = client[db_name][OUTBOX_COLLECTION]

    async def ensure_indexes(self) -> None:
        await create_missing_indexes(self._col, [IndexModel("created_at")])

    async def add_group(self, entries: list[tuple[str, int]]) -> str:
        """Record intent to publish each ``(job_id, attempt)``; returns the group id."""
        group = uuid.uuid4().hex
        async with store_errors():
            await self._col.insert_one(
                {
                    "_id": group,
                    "entries": [{"job_id": j, "attempt": a} for j, a in entries],
                    "created_at": utcnow(),
                }
            )
        return group

    async def add(self, job_id: str, attempt: int) -> str:
        return await self.add_group([(job_id, attempt)])

    async def add_jobs(self, jobs: list[Job]) -> str:
        """One group for the current attempt of each of ``jobs``."""
        return await self.add_group([(j.id, j.next_attempt) for j in jobs])

    async def remove(self, group: str) -> None:
        async with store_errors():
            await self._col.delete_one({"_id": group})

    async def due(self, grace_s: float, limit: int) -> list[dict[str, Any]]:
        older_than = utcnow() - timedelta(seconds=grace_s)
        async with store_errors():
            return (
                await self._col.find({"created_at": {"$lt": older_than}})
                .sort("created_at", 1)
                .limit(limit)
                .to_list()
            )

    async def count(self) -> int:
        async with store_errors():
            return await self._col.count_documents({})


async def publish_all(publisher: Publisher, jobs: list[Job]) -> list[BaseException | None]:
    """Publish every job's current attempt, pipelined (all confirms awaited
    together); one result per job: ``None`` (confirmed) or the error."""
    results = await asyncio.gather(
        *(publisher.publish_job(j.envelope(), j.trace) for j in jobs), return_exceptions=True
    )
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, BrokerUnavailableError):
            raise r
    return [r if isinstance(r, BaseException) else None for r in results]


async def forget_group(outbox: Outbox, group: str) -> None:
    try:
        await outbox.remove(group)
    except StoreUnavailableError:
        log.warning("outbox group not removed; the relay will re-send (harmless)", group=group)


async def relay_once(
    store: JobStore, outbox: Outbox, publisher: Publisher, grace_s: float, batch: int = 100
) -> int:
    """Publish the messages of stranded groups; returns how many were published."""
    published = 0
    for group in await outbox.due(grace_s, batch):
        for entry in group["entries"]:
            job = await store.get(entry["job_id"])
            if job is None or job.status.finished or job.next_attempt != entry["attempt"]:
                continue  # nothing left to send
            # Without the snapshot: the worker reads the job, so if the first message
            # did get through and its attempt runs, this copy is skipped.
            await publisher.publish_job(job.envelope().model_copy(update={"job": None}), job.trace)
            published += 1
            log.info(
                "outbox: re-sent a stranded message",
                job_id=job.id,
                type=job.type,
                attempt=job.next_attempt,
            )
        await outbox.remove(group["_id"])
    return published


async def run_relay(
    store: JobStore,
    outbox: Outbox,
    publisher: Publisher,
    grace_s: float,
    *,
    events: Events | None = None,
    interval_s: float | None = None,
) -> None:
    """Loop until cancelled (jobs' messages, then staged events, each on its own);
    an outage is logged and retried next round, and so is anything unexpected:
    this loop must never die quietly."""
    interval = interval_s if interval_s is not None else max(1.0, grace_s / 3)
    rounds: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("jobs", lambda: relay_once(store, outbox, publisher, grace_s))
    ]
    if events is not None:
        rounds.append(("events", lambda: events.relay_once(store, grace_s)))
    while True:
        for name, relay in rounds:
            try:
                await relay()
            except (BrokerUnavailableError, StoreUnavailableError) as exc:
                log.warning("outbox: relay round failed, will retry", relay=name, error=str(exc))
            except Exception:
                log.exception("outbox: relay round crashed, will retry", relay=name)
        await asyncio.sleep(interval)
