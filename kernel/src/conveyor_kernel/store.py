"""The MongoDB job store (PyMongo's async API).

Jobs live in ``<db>.jobs`` keyed by ``_id``. Every state change is a
compare-and-set on ``rev`` (``replace_one({_id, rev})``), so on MongoDB a
redelivered or duplicated message can never overwrite a newer state: the loser
re-reads and decides again. After its insert, a job document has one writer at
a time (the worker holding its message): FerretDB v1 does not apply updates
atomically, so the design must not rely on concurrent writers being serialised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from conveyor_kernel.counts import Stats, Tally
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.finished import (
    FINISHED_COLLECTION,
    REOPENED_OF,
    GroupDelete,
    GroupInsert,
    Homes,
    merge,
    merge_tagged,
    newer,
)
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
        self._finished: AsyncCollection[Document] = client[db_name][FINISHED_COLLECTION]
        self._finishes = GroupInsert(self._finished)  # a job ends with an insert
        self._leftovers = GroupDelete(self._jobs)  # ... and its open document goes
        self._homes = Homes(self._jobs, self._finished)
        self.tally = Tally()  # count changes of this process's writes (conveyor_kernel.counts)
        self.index = JobIndex(client, db_name)  # where jobs are, for lists (listing)

    async def ping(self) -> None:
        async with store_errors():
            await self._client.admin.command("ping")

    async def ensure_indexes(self) -> None:
        """What lists, the dead letters and a waiting status's few jobs look up (a
        page is found by bucket: conveyor_kernel.listing); retention adds its own."""
        for col in (self._jobs, self._finished):
            await create_missing_indexes(
                col,
                [
                    pymongo.IndexModel([("created_bucket", 1)], name="created_bucket"),
                    pymongo.IndexModel([("status", 1)], name="status"),
                    pymongo.IndexModel([("dead_lettered", 1)], name="dead", sparse=True),
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
        """The job as now stored; a stale second document it finds is removed."""
        async with store_errors():
            open_doc, done_doc = await asyncio.gather(
                self._jobs.find_one({"_id": job_id}), self._finished.find_one({"_id": job_id})
            )
        doc = newer(open_doc, done_doc)
        if doc is None:
            return None
        if open_doc is not None and done_doc is not None:
            stale, col = (open_doc, self._jobs) if doc is done_doc else (done_doc, self._finished)
            try:
                async with store_errors():
                    await col.delete_one({"_id": job_id, "rev": stale["rev"]})
            except StoreUnavailableError as exc:  # the next read tries again
                log.warning("stale job document not removed", job_id=job_id, error=str(exc))
        home = FINISHED_COLLECTION if doc is done_doc else JOBS_COLLECTION
        return Job.model_validate(doc).rebased(home)

    async def compare_and_set(self, job: Job) -> Job | None:
        """Write ``job`` if nobody changed it since it was read (``rev`` matches).

        Returns the stored job (``rev`` bumped) or ``None`` when the CAS lost. A job
        that finishes moves to ``finished_jobs`` with an insert, and one reopened
        from there moves back (conveyor_kernel.finished).
        """
        expected = job.rev
        new = job.model_copy(update={"rev": expected + 1})
        if job.status is not job.base_status and (
            status_dimension(job.status) or job.dead_letter is not None
        ):
            await self.index.note([new], only_new_status=True)
        home = job.home or (FINISHED_COLLECTION if job.base_status.finished else JOBS_COLLECTION)
        if new.status.finished:
            won, home = await self._write_finished(new, home, expected), FINISHED_COLLECTION
        else:
            if home == FINISHED_COLLECTION:
                new = new.model_copy(update={"reopened_of": expected})
            won, home = await self._write_open(new, home, expected), JOBS_COLLECTION
        if not won:
            return None
        self.tally.move(job.type, job.base_status, new.status)
        return new.rebased(home)

    async def _write_finished(self, new: Job, home: str, expected: int) -> bool:
        doc = new.to_document()
        async with store_errors():
            if home == FINISHED_COLLECTION:
                result = await self._finished.replace_one({"_id": new.id, "rev": expected}, doc)
                return result.matched_count == 1
        if not await self._finishes.insert(doc):
            # Lost, unless the finished document there is the one this job was
            # reopened from, left by a reopen that could not remove it.
            if new.reopened_of is None:
                return False
            async with store_errors():
                result = await self._finished.replace_one(
                    {"_id": new.id, "rev": new.reopened_of}, doc
                )
            if result.matched_count != 1:
                return False
        await self._leftovers.delete(doc["created_bucket"], new.id, new.rev)
        return True

    async def _write_open(self, new: Job, home: str, expected: int) -> bool:
        doc = new.to_document()
        async with store_errors():
            if home == JOBS_COLLECTION:
                result = await self._jobs.replace_one({"_id": new.id, "rev": expected}, doc)
                return result.matched_count == 1
            try:  # reopened: the open document first, so the job is never absent
                await self._jobs.insert_one(doc)
            except DuplicateKeyError:
                return False
        try:
            async with store_errors():
                await self._finished.delete_one({"_id": new.id, "rev": expected})
        except StoreUnavailableError as exc:  # newer() already prefers the open one
            log.warning("reopened job's finished document not removed", error=str(exc))
        return True

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
        modified = 0
        async with store_errors():
            for col in (self._finished, self._jobs):  # (jobs: stored before finished_jobs)
                result = await col.update_many(
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
                modified += result.modified_count
        return modified

    async def delete_finished(self, job_id: str) -> DeleteResult:
        for _ in range(3):
            job = await self.get(job_id)
            if job is None:
                return DeleteResult.NOT_FOUND
            if not job.status.finished:
                return DeleteResult.NOT_FINISHED
            col = self._finished if job.home == FINISHED_COLLECTION else self._jobs
            async with store_errors():  # no projection: FerretDB v1 has none
                doc = await col.find_one_and_delete({"_id": job_id, "rev": job.rev})
            if doc is not None:
                self.tally.add(str(doc["status"]), str(doc["type"]), -1)
                return DeleteResult.DELETED
        return DeleteResult.NOT_FINISHED  # it keeps changing: not finished for long

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
        mutable = status is not None or dead_lettered  # a job can leave such a filter
        if dim is None:  # few: read them whole
            docs = ordered(await self._homes.both(query), after)
            return page_of(await self._homes.current_page(docs, limit), limit, None)
        found: list[Document] = []
        budget, stopped = Budget(WALK_BUDGET_S), None
        before = created_bucket(after[0]) if after else None

        async def fetch(bucket: str) -> list[Document]:
            docs = await self._homes.both({**query, "created_bucket": bucket})
            return await self._homes.current(docs) if mutable else merge_tagged(docs)

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
        """Jobs by status and by type, counted over both collections: the truth the
        maintained counts (``conveyor_kernel.counts``) are checked against in tests
        and benches. It reads every job (FerretDB v1: ~0.3 ms a job), so no service
        calls it; ``timeout_s`` bounds the operation."""
        fields = {"status": 1, "type": 1, "rev": 1, REOPENED_OF: 1}
        by_status: dict[str, int] = {}
        by_type: dict[str, int] = {}
        async with store_errors():
            with pymongo.timeout(timeout_s):
                open_docs = await self._jobs.find({}, fields).to_list()
                done_docs = await self._finished.find({}, fields).to_list()
        for doc in merge(open_docs, done_docs):
            status, type_ = str(doc["status"]), str(doc["type"])
            by_status[status] = by_status.get(status, 0) + 1
            by_type[type_] = by_type.get(type_, 0) + 1
        return Stats(by_status=by_status, by_type=by_type, total=sum(by_status.values()))
