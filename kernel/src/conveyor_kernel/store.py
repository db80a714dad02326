"""The MongoDB job store (PyMongo's async API).

Jobs live in ``<db>.jobs`` keyed by ``_id``. Every state change is a
compare-and-set on ``rev`` (``replace_one({_id, rev})``), so on MongoDB a
redelivered or duplicated message can never overwrite a newer state: the loser
re-reads and decides again. After its insert, a job document has one writer at
a time (the worker holding its message): FerretDB v1 does not apply updates
atomically, so the design must not rely on concurrent writers being serialised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from conveyor_kernel.counts import Stats, Tally
from conveyor_kernel.listing import (
    WALK_BUDGET_S,
    Budget,
    JobIndex,
    Page,
    bucket_start,
    decode_cursor,
    dimension_for,
    encode_position,
    needs_counts,
    ordered,
    page_of,
    prefetched,
    status_dimension,
)
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import (
    FINISHED_STATUSES,
    Job,
    JobProgress,
    JobStatus,
    created_bucket,
    expiry_bucket,
    utcnow,
)
from conveyor_kernel.mongo import Document, create_missing_indexes, store_errors

JOBS_COLLECTION = "jobs"
log = get_logger(__name__)


class DeleteResult(Enum):
    DELETED = "deleted"
    NOT_FOUND = "not_found"
    NOT_FINISHED = "not_finished"


class JobStore:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._client = client
        self._jobs: AsyncCollection[Document] = client[db_name][JOBS_COLLECTION]
        self.tally = Tally()  # count changes of this process's writes (conveyor_kernel.counts)
        self.index = JobIndex(client, db_name)  # where jobs are, for lists (listing)

    async def ping(self) -> None:
        async with store_errors():
            await self._client.admin.command("ping")

    async def ensure_indexes(self) -> None:
        """Indexes for list (newest first, filtered by status/type) and stats."""
        await create_missing_indexes(
            self._jobs,
            [
                pymongo.IndexModel(
                    [("created_at", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)],
                    name="created_desc",
                ),
                pymongo.IndexModel(
                    [("status", 1), ("created_at", pymongo.DESCENDING), ("_id", -1)],
                    name="status_created_desc",
                ),
                pymongo.IndexModel(
                    [("type", 1), ("created_at", pymongo.DESCENDING), ("_id", -1)],
                    name="type_created_desc",
                ),
                pymongo.IndexModel(
                    [("schedule_id", 1), ("created_at", pymongo.DESCENDING), ("_id", -1)],
                    name="schedule_created_desc",
                    sparse=True,
                ),
                pymongo.IndexModel([("created_bucket", 1)], name="created_bucket"),
            ],
        )
        await self.index.ensure_indexes()

    async def insert(self, job: Job) -> None:
        await self.index.note([job])
        async with store_errors():
            await self._jobs.insert_one(job.to_document())
        self.tally.add(job.status, job.type)

    async def insert_many(self, jobs: list[Job]) -> None:
        """One bulk write (ordered: a failure stops it; callers compensate)."""
        await self.index.note(jobs)
        async with store_errors():
            await self._jobs.insert_many([j.to_document() for j in jobs], ordered=True)
        for job in jobs:
            self.tally.add(job.status, job.type)

    async def get(self, job_id: str) -> Job | None:
        async with store_errors():
            doc = await self._jobs.find_one({"_id": job_id})
        return None if doc is None else Job.model_validate(doc)

    async def compare_and_set(self, job: Job) -> Job | None:
        """Write ``job`` if nobody changed it since it was read (``rev`` matches).

        Returns the stored job (``rev`` bumped) or ``None`` when the CAS lost.
        """
        expected = job.rev
        new = job.model_copy(update={"rev": expected + 1})
        if job.status is not job.base_status and (
            status_dimension(job.status) or job.dead_letter is not None
        ):
            await self.index.note([new], only_new_status=True)
        async with store_errors():
            result = await self._jobs.replace_one(
                {"_id": job.id, "rev": expected}, new.to_document()
            )
        if result.matched_count != 1:
            return None
        self.tally.move(job.type, job.base_status, new.status)
        return new.rebased()

    async def set_progress(self, job_id: str, rev: int, progress: JobProgress) -> bool:
        """Record a running attempt's progress without a new ``rev`` (its owner's next
        compare-and-set still matches); a no-op once anyone else wrote the job."""
        async with store_errors():
            result = await self._jobs.update_one(
                {"_id": job_id, "rev": rev}, {"$set": {"progress": progress.model_dump()}}
            )
        return result.matched_count == 1

    async def delete_queued(self, jobs: list[Job]) -> int:
        """Compensation for publishes the broker did not accept (never-started jobs only)."""
        deleted = 0
        async with store_errors():
            for job in jobs:
                result = await self._jobs.delete_one(
                    {
                        "_id": job.id,
                        "status": {"$in": [JobStatus.QUEUED.value, JobStatus.SCHEDULED.value]},
                        "attempts": [],
                    }
                )
                if result.deleted_count:
                    self.tally.add(job.status, job.type, -1)
                    deleted += 1
        return deleted

    async def clear_dead_letters(self, expires_at: datetime) -> int:
        """Drop every job from the dead-letter list (the jobs stay ``failed``, and are
        deleted at ``expires_at``)."""
        async with store_errors():
            result = await self._jobs.update_many(
                {"dead_lettered": True},
                {
                    "$unset": {"dead_lettered": ""},
                    "$set": {
                        "dead_letter": None,
                        "updated_at": utcnow(),
                        "expires_at": expires_at,
                        "expires_bucket": expiry_bucket(expires_at),
                    },
                    "$inc": {"rev": 1},
                },
            )
        return result.modified_count

    async def delete_finished(self, job_id: str) -> DeleteResult:
        async with store_errors():
            doc = await self._jobs.find_one_and_delete(  # no projection: FerretDB v1 has none
                {"_id": job_id, "status": {"$in": [s.value for s in FINISHED_STATUSES]}}
            )
            if doc is not None:
                self.tally.add(str(doc["status"]), str(doc["type"]), -1)
                return DeleteResult.DELETED
            exists = await self._jobs.find_one({"_id": job_id}, {"_id": 1})
        return DeleteResult.NOT_FINISHED if exists else DeleteResult.NOT_FOUND

    async def list(
        self,
        *,
        status: JobStatus | None = None,
        job_type: str | None = None,
        schedule_id: str | None = None,
        dead_lettered: bool = False,
        limit: int = 50,
        cursor: str | None = None,
        counts: Callable[[], Awaitable[Stats | None]] | None = None,
    ) -> Page:
        """Newest first; ``cursor`` is the opaque ``next_cursor`` of the previous page.
        ``counts`` reads the maintained counts, which tell how few jobs a filter may
        match; it is called only for a filter that needs them. A page
        may be short with a ``next_cursor`` when the walk ran out of time
        (:mod:`conveyor_kernel.listing`)."""
        query: dict[str, Any] = {}
        if status is not None:
            query["status"] = status.value
        if job_type is not None:
            query["type"] = job_type
        if schedule_id is not None:
            query["schedule_id"] = schedule_id
        if dead_lettered:
            query["dead_lettered"] = True
        after = decode_cursor(cursor) if cursor else None
        stats = None
        if counts is not None and needs_counts(status, job_type, schedule_id, dead_lettered):
            stats = await counts()
        dim = dimension_for(status, job_type, schedule_id, dead_lettered, stats)
        if dim is None:  # few: read them whole
            async with store_errors():
                docs = ordered(await self._jobs.find(query).to_list(), after)
            return page_of(docs, limit, None)
        found: list[Document] = []
        budget, stopped = Budget(WALK_BUDGET_S), None
        before = created_bucket(after[0]) if after else None

        async def fetch(bucket: str) -> list[Document]:
            return await self._jobs.find({**query, "created_bucket": bucket}).to_list()

        walk = prefetched(self.index.buckets(dim, before), fetch)
        async with store_errors(), contextlib.aclosing(walk):
            async for bucket, docs in walk:
                found.extend(ordered(docs, after))
                if len(found) > limit:
                    break
                if budget.spent and bucket != before:  # (the cursor's own: go on)
                    stopped = encode_position(bucket_start(bucket), "")
                    break
        return page_of(found, limit, stopped)

    async def stats(self, timeout_s: float) -> Stats:
        """Jobs by status and by type, counted in one pass over the collection: the
        truth the maintained counts (``conveyor_kernel.counts``) are checked against
        in tests and benches. It reads every job (FerretDB v1: ~0.3 ms a job), so no
        service calls it; ``timeout_s`` bounds the operation."""
        pipeline = [{"$group": {"_id": {"s": "$status", "t": "$type"}, "n": {"$sum": 1}}}]
        by_status: dict[str, int] = {}
        by_type: dict[str, int] = {}
        async with store_errors():
            with pymongo.timeout(timeout_s):
                rows: list[Document] = await (await self._jobs.aggregate(pipeline)).to_list()
        for row in rows:
            status, type_, n = str(row["_id"]["s"]), str(row["_id"]["t"]), int(row["n"])
            by_status[status] = by_status.get(status, 0) + n
            by_type[type_] = by_type.get(type_, 0) + n
        return Stats(by_status=by_status, by_type=by_type, total=sum(by_status.values()))

    async def count(self, query: Mapping[str, Any]) -> int:
        async with store_errors():
            return await self._jobs.count_documents(dict(query))
