"""Retention: finished jobs and their deliveries are deleted once ``expires_at``
has passed.

``expires_at`` is set by the transition that finishes a job
(:mod:`conveyor_kernel.machine`): completed or cancelled, ``retention_s`` later;
failed, never while it is a dead letter, and ``failed_retention_s`` after a
purge. Waiting and running jobs have none, and the sweep also checks the
status, so they are never deleted.

**The sweep reads only what is due, whatever is stored.** A job document with an
``expires_at`` also carries its ``expires_bucket`` (the 10-second slot it falls
in, :func:`conveyor_kernel.model.expiry_bucket`). The sweep walks the buckets in
time order from a cursor, one equality query per bucket, which MongoDB serves
from an index and FerretDB v1 pushes down to PostgreSQL (indexed by
``scripts/ferretdb_indexes.sql``): a range filter on ``expires_at`` would be a
scan of every stored job on FerretDB. The cursor (``retention`` collection)
only passes a bucket once it ended ``SKEW_S`` ago and was emptied, so a job
written by a process whose clock runs a little behind is still found; until
then the current and recent buckets are swept again each round.

The sweep runs in every API replica (deletes are idempotent): each round takes
at most ``batch`` expired jobs and ``MAX_BUCKETS`` buckets, deletes the jobs'
deliveries (by ``job_id``, indexed), then the jobs (one ``delete_many`` per
bucket). That is bounded work per interval, whatever the backlog, and it works
on FerretDB v1, which has no TTL indexes. Where the server has them (MongoDB),
a TTL index on ``expires_at`` removes jobs a day late as a backstop if no
sweeper runs; deliveries are only removed by the sweep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pymongo
from pymongo import AsyncMongoClient

from conveyor_kernel.counts import Tally
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import (
    EXPIRY_BUCKET_S,
    FINISHED_STATUSES,
    expiry_bucket,
    expiry_bucket_start,
    utcnow,
)
from conveyor_kernel.mongo import (
    Document,
    create_missing_indexes,
    ensure_ttl_index,
    insert_new,
    store_errors,
)
from conveyor_kernel.notifications import DELIVERIES_COLLECTION
from conveyor_kernel.store import JOBS_COLLECTION

log = get_logger(__name__)

BACKSTOP_S = 86_400  # the TTL index's delay after expires_at
RETENTION_COLLECTION = "retention"
CURSOR_ID = "jobs"
BUCKET = timedelta(seconds=EXPIRY_BUCKET_S)
SKEW_S = 120.0  # a bucket is left for good this long after it ended
MAX_BUCKETS = 1000  # bucket queries per round at most (a catch-up spans rounds)
_FINISHED = [s.value for s in FINISHED_STATUSES]


@dataclass(frozen=True)
class Sweep:
    deleted: int
    behind: bool  # more is due now: sweep again without waiting


class Retention:
    def __init__(
        self,
        client: AsyncMongoClient[Document],
        db_name: str,
        tally: Tally,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._jobs = client[db_name][JOBS_COLLECTION]
        self._deliveries = client[db_name][DELIVERIES_COLLECTION]
        self._state = client[db_name][RETENTION_COLLECTION]
        self._tally = tally  # the job store's: deletes change the counts
        self._clock = clock
        self._cursor: datetime | None = None  # every bucket before it is swept

    async def ensure_indexes(self) -> None:
        await ensure_ttl_index(self._jobs, "expires_at", after_s=BACKSTOP_S)
        await create_missing_indexes(
            self._jobs, [pymongo.IndexModel([("expires_bucket", 1)], name="expiry", sparse=True)]
        )
        # The first start of a store: no job can have expired before now.
        start = {"_id": CURSOR_ID, "swept_before": expiry_bucket_start(self._clock())}
        await insert_new(self._state, start)

    async def _load_cursor(self) -> datetime:
        async with store_errors():
            doc = await self._state.find_one({"_id": CURSOR_ID})
        if doc is None:  # ensure_indexes did not run (or the document was removed)
            return expiry_bucket_start(self._clock() - timedelta(seconds=SKEW_S))
        at: datetime = doc["swept_before"]
        return at

    async def sweep_once(self, batch: int) -> Sweep:
        """Delete up to ``batch`` expired finished jobs and their deliveries."""
        now = self._clock()
        cursor = self._cursor if self._cursor is not None else await self._load_cursor()
        bucket, last = cursor, expiry_bucket_start(now)
        advancing, deleted, walked, emptied = True, 0, 0, True
        while bucket <= last and walked < MAX_BUCKETS and deleted < batch:
            n, emptied = await self._sweep_bucket(bucket, now, batch - deleted)
            deleted, walked = deleted + n, walked + 1
            closed = (now - (bucket + BUCKET)).total_seconds() >= SKEW_S
            advancing = advancing and emptied and closed
            if advancing:
                cursor = bucket + BUCKET
            if not emptied:
                break
            bucket += BUCKET
        if self._cursor != cursor:
            await self._save_cursor(cursor)
        return Sweep(deleted=deleted, behind=not emptied or bucket <= last)

    async def _sweep_bucket(self, bucket: datetime, now: datetime, limit: int) -> tuple[int, bool]:
        """Up to ``limit`` due jobs of one bucket: (deleted, whether none is left)."""
        due = {
            "expires_bucket": expiry_bucket(bucket),
            "expires_at": {"$lt": now},
            "status": {"$in": _FINISHED},
        }
        async with store_errors():
            found = self._jobs.find(due, {"status": 1, "type": 1}).limit(limit + 1)
            docs = [doc async for doc in found]
            take = docs[:limit]
            if not take:
                return 0, True
            ids = [doc["_id"] for doc in take]
            for job_id in ids:
                await self._deliveries.delete_many({"job_id": job_id})
            result = await self._jobs.delete_many({**due, "_id": {"$in": ids}})
            gone = take
            if result.deleted_count != len(take):  # some changed meanwhile (retried): which?
                left = self._jobs.find(
                    {"expires_bucket": due["expires_bucket"], "_id": {"$in": ids}}
                )
                kept = {doc["_id"] async for doc in left}
                gone = [doc for doc in take if doc["_id"] not in kept]
        for doc in gone:
            self._tally.add(str(doc["status"]), str(doc["type"]), -1)
        return len(gone), len(docs) <= limit

    async def _save_cursor(self, cursor: datetime) -> None:
        """``$max``: a replica that swept less never moves the cursor back."""
        async with store_errors():
            await self._state.update_one(
                {"_id": CURSOR_ID}, {"$max": {"swept_before": cursor}}, upsert=True
            )
        self._cursor = cursor


async def run_sweeper(retention: Retention, interval_s: float, batch: int) -> None:
    """Sweep every ``interval_s`` until cancelled; sweep again at once while behind."""
    while True:
        try:
            sweep = await retention.sweep_once(batch)
        except StoreUnavailableError as exc:
            log.warning("retention sweep failed; will retry", error=str(exc))
            sweep = Sweep(deleted=0, behind=False)
        except Exception:
            log.exception("retention sweep crashed; will retry")
            sweep = Sweep(deleted=0, behind=False)
        if sweep.deleted:
            log.info("retention: expired jobs deleted", count=sweep.deleted)
        if not sweep.behind:
            await asyncio.sleep(interval_s)
