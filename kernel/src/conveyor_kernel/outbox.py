"""The transactional outbox: no accepted job is left without a message.

Before a job's message is published, an entry ``{job_id, attempt}`` goes into
the ``outbox`` collection; after the broker confirms, the entry is deleted. If
the publisher dies in between, or the broker refuses a retry's message, the
entry stays. The relay (run by the API and by every worker) publishes entries
older than ``grace_s`` again, after checking the job still waits for that
attempt. A duplicate message is harmless: the worker skips a message whose
attempt already started or finished.

The entry lives in its own collection rather than as a flag on the job so that
the job document keeps a single writer (see :mod:`conveyor_kernel.store`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient, IndexModel

from conveyor_kernel.broker import Publisher
from conveyor_kernel.errors import BrokerUnavailableError, StoreUnavailableError
from conveyor_kernel.events import Events
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import Job, utcnow
from conveyor_kernel.store import Document, JobStore, create_missing_indexes, store_errors

OUTBOX_COLLECTION = "outbox"

log = get_logger(__name__)


def _key(job_id: str, attempt: int) -> str:
    return f"{job_id}:{attempt}"


class Outbox:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._col = client[db_name][OUTBOX_COLLECTION]

    async def ensure_indexes(self) -> None:
        await create_missing_indexes(self._col, [IndexModel("created_at")])

    async def add(self, job_id: str, attempt: int) -> None:
        """Record intent to publish ``attempt`` of ``job_id`` (idempotent upsert)."""
        async with store_errors():
            await self._col.update_one(
                {"_id": _key(job_id, attempt)},
                {"$setOnInsert": {"job_id": job_id, "attempt": attempt, "created_at": utcnow()}},
                upsert=True,
            )

    async def add_many(self, jobs: list[Job]) -> None:
        """Entries for the current attempt of each of ``jobs`` (fresh job ids)."""
        now = utcnow()
        async with store_errors():
            await self._col.insert_many(
                [
                    {
                        "_id": _key(j.id, j.next_attempt),
                        "job_id": j.id,
                        "attempt": j.next_attempt,
                        "created_at": now,
                    }
                    for j in jobs
                ],
                ordered=True,
            )

    async def remove_many(self, jobs: list[Job]) -> None:
        async with store_errors():
            await self._col.delete_many(
                {"_id": {"$in": [_key(j.id, j.next_attempt) for j in jobs]}}
            )

    async def remove(self, job_id: str, attempt: int) -> None:
        async with store_errors():
            await self._col.delete_one({"_id": _key(job_id, attempt)})

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


async def dispatch(outbox: Outbox, publisher: Publisher, job: Job) -> None:
    """Publish ``job``'s current attempt, confirmed. Call after ``outbox.add``.

    Raises :class:`BrokerUnavailableError` when the broker did not take it; the
    outbox entry then stays for the relay (or for the caller to compensate).
    """
    await dispatch_many(outbox, publisher, [job])


async def dispatch_many(outbox: Outbox, publisher: Publisher, jobs: list[Job]) -> None:
    """Publish every job's current attempt, pipelined: all confirms awaited together.

    Raises :class:`BrokerUnavailableError` if any publish was not confirmed (the
    others may have been: the caller compensates, the worker skips orphans).
    """
    results = await asyncio.gather(
        *(publisher.publish_job(j.envelope()) for j in jobs), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        if not isinstance(failure, BrokerUnavailableError):
            raise failure
    if failures:
        raise BrokerUnavailableError(
            f"{len(failures)} of {len(jobs)} messages not confirmed: {failures[0]}"
        )
    try:
        await outbox.remove_many(jobs)
    except StoreUnavailableError:
        log.warning(
            "outbox entries not removed; the relay will re-send (harmless)", count=len(jobs)
        )


async def relay_once(
    store: JobStore, outbox: Outbox, publisher: Publisher, grace_s: float, batch: int = 500
) -> int:
    """Publish one batch of stranded entries; returns how many were published."""
    published = 0
    for entry in await outbox.due(grace_s, batch):
        job = await store.get(entry["job_id"])
        if job is None or job.status.finished or job.next_attempt != entry["attempt"]:
            await outbox.remove(entry["job_id"], entry["attempt"])  # nothing left to send
            continue
        await dispatch(outbox, publisher, job)
        published += 1
        log.info(
            "outbox: re-sent a stranded message",
            job_id=job.id,
            type=job.type,
            attempt=job.next_attempt,
        )
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
