"""Job lists that cost the page, not the collection: a time index of where jobs are.

FerretDB v1 sorts in memory and pushes down to PostgreSQL only equality filters,
so ``find(filter).sort(created_at).limit(50)`` reads every matching job, then
sorts them: a list page on a million stored jobs takes seconds. So every job
document carries ``created_bucket`` (the second it was created in), and the
``job_index`` collection records, per *dimension*, the buckets that hold such
jobs, in four levels (second -> minute -> hour -> day), so a walk skips empty time:

* ``all``: every job; ``type=<t>`` and ``schedule=<id>``: fixed at creation;
* ``status=<s>`` for the finished statuses and ``dead``: noted by the write that
  moves a job there. Jobs seldom leave them, so their buckets stay dense.

An entry is written (idempotently, insert-only) *before* the job write that needs
it, so the index never misses a job; a job that left its status later leaves a
stale entry, which only costs the walk one empty query. Each process remembers
the entries it wrote, so the index costs about one insert per new second.

A list walks one dimension's buckets newest first, one equality query per bucket
(``created_bucket`` and the filters, all pushed down and indexed), until the page
is full or ``WALK_BUDGET_S`` is spent: then the page may be short, and its
``next_cursor`` continues the walk. Waiting statuses (``queued``, ``running``...)
have no dimension: their jobs are read whole when the maintained counts say they
are few, else found by walking ``all`` (a backlog is the newest work).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError

from conveyor_kernel.counts import Stats
from conveyor_kernel.model import (
    BUCKET_KEY_FORMAT,
    FINISHED_STATUSES,
    Job,
    JobStatus,
    created_bucket,
)
from conveyor_kernel.mongo import Document, create_missing_indexes, store_errors

INDEX_COLLECTION = "job_index"
WALK_BUDGET_S = 0.2  # per page, then a short page and a cursor
PREFETCH = 8  # bucket queries in flight at most
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REMEMBERED = 50_000  # entries each process remembers having written
DUPLICATE_KEY = 11000
_INDEXED = frozenset(s.value for s in FINISHED_STATUSES)
# (code, key length, parent field): a day's entry names its dimension, an hour's
# its day, a minute's its hour, a second's its minute; a walk reads at most ~60
# entries a query.
LEVELS = (("d", 10, "ix_dim"), ("h", 13, "ix_day"), ("m", 16, "ix_hour"), ("s", 20, "ix_minute"))
LEVEL_KEYS = tuple(field for _, _, field in LEVELS)


def bucket_start(bucket: str) -> datetime:
    return datetime.strptime(bucket, BUCKET_KEY_FORMAT).replace(tzinfo=UTC)


def dimensions(job: Job) -> list[str]:
    """The index dimensions a job belongs to as it is now."""
    dims = ["all", f"type={job.type}"]
    if job.schedule_id is not None:
        dims.append(f"schedule={job.schedule_id}")
    if job.status.value in _INDEXED:
        dims.append(f"status={job.status.value}")
    if job.dead_letter is not None:
        dims.append("dead")
    return dims


def status_dimension(status: JobStatus) -> str | None:
    return f"status={status.value}" if status.value in _INDEXED else None


def _entries(dim: str, bucket: str) -> list[Document]:
    """The second's entry and its minute's, hour's and day's, each naming its parent."""
    docs = []
    for i, (code, n, field) in enumerate(LEVELS):
        parent = dim if i == 0 else f"{dim}|{bucket[: LEVELS[i - 1][1]]}"
        docs.append({"_id": f"{dim}|{code}|{bucket[:n]}", field: parent})
    return docs


class JobIndex:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._col = client[db_name][INDEX_COLLECTION]
        self._written: OrderedDict[str, None] = OrderedDict()

    async def ensure_indexes(self) -> None:
        await create_missing_indexes(
            self._col,
            [pymongo.IndexModel([(k, 1)], name=k, sparse=True) for k in LEVEL_KEYS],
        )

    async def note(self, jobs: Iterable[Job], only_new_status: bool = False) -> None:
        """Record where ``jobs`` are (before they are written). ``only_new_status``:
        a status change, so only the dimensions that change can be new."""
        docs: dict[str, Document] = {}
        for job in jobs:
            bucket = created_bucket(job.created_at)
            dims = dimensions(job)
            if only_new_status:
                dims = [d for d in dims if d.startswith("status=") or d == "dead"]
            for dim in dims:
                for doc in _entries(dim, bucket):
                    if doc["_id"] in self._written:
                        self._written.move_to_end(doc["_id"])  # the hours and days stay
                    else:
                        docs[doc["_id"]] = doc
        if not docs:
            return
        async with store_errors():
            try:
                await self._col.insert_many(list(docs.values()), ordered=False)
            except BulkWriteError as exc:  # entries written before (by anyone) are fine
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
        for key in docs:
            self._written[key] = None
        while len(self._written) > REMEMBERED:
            self._written.popitem(last=False)

    async def _ids(self, query: Document) -> list[str]:
        async with store_errors():
            docs = await self._col.find(query, {"_id": 1}).to_list()
        return sorted((str(d["_id"]) for d in docs), reverse=True)

    async def buckets(self, dim: str, before: str | None) -> AsyncIterator[str]:
        """The dimension's buckets, newest first, from ``before`` (included) down."""

        async def level(i: int, parent: str) -> AsyncIterator[str]:
            _, n, field = LEVELS[i]
            for entry in await self._ids({field: parent}):
                key = entry.rsplit("|", 1)[1]
                if before is not None and key > before[:n]:
                    continue
                if i == len(LEVELS) - 1:
                    yield key
                else:
                    async for bucket in level(i + 1, f"{dim}|{key}"):
                        yield bucket

        async for bucket in level(0, dim):
            yield bucket


async def prefetched(
    buckets: AsyncIterator[str],
    fetch: Callable[[str], Coroutine[Any, Any, list[Document]]],
    most: int = PREFETCH,
) -> AsyncGenerator[tuple[str, list[Document]]]:
    """Each bucket with its jobs, in order, fetching ahead: one query at first, then
    twice as many in flight each round up to ``most`` (sparse time needs many
    queries, dense time one). Use it with ``contextlib.aclosing``: leaving early
    cancels what is still in flight."""
    pending: deque[tuple[str, asyncio.Task[list[Document]]]] = deque()
    window, exhausted = 1, False
    try:
        while True:
            while not exhausted and len(pending) < window:
                bucket = await anext(buckets, None)
                if bucket is None:
                    exhausted = True
                else:
                    pending.append((bucket, asyncio.create_task(fetch(bucket))))
            if not pending:
                return
            bucket, task = pending.popleft()
            yield bucket, await task
            window = min(most, window * 2)
    finally:
        for _, task in pending:
            task.cancel()
        for _, task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class Budget:
    def __init__(self, seconds: float) -> None:
        self._until = time.monotonic() + seconds

    @property
    def spent(self) -> bool:
        return time.monotonic() >= self._until


class InvalidCursorError(ValueError):
    """A list cursor that this store did not produce."""


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


def encode_cursor(job: Job) -> str:
    return encode_position(job.created_at, job.id)


def encode_position(created_at: datetime, job_id: str) -> str:
    """Where a list goes on: jobs before (``created_at``, ``job_id``) in list order."""
    millis = (created_at - EPOCH) // timedelta(milliseconds=1)
    return base64.urlsafe_b64encode(f"{millis}:{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        millis, job_id = raw.split(":", 1)
        return datetime.fromtimestamp(int(millis) / 1000, UTC), job_id
    except (ValueError, OverflowError, OSError, binascii.Error) as exc:
        raise InvalidCursorError(f"invalid cursor {cursor!r}") from exc


DIRECT_MAX = 2000  # a filter matching at most this many jobs reads them whole


def needs_counts(
    status: JobStatus | None, job_type: str | None, schedule_id: str | None, dead_lettered: bool
) -> bool:
    """Whether :func:`dimension_for` would look at the counts for this filter."""
    return schedule_id is None and not dead_lettered and (status or job_type) is not None


def dimension_for(
    status: JobStatus | None,
    job_type: str | None,
    schedule_id: str | None,
    dead_lettered: bool,
    counts: Stats | None,
) -> str | None:
    """The index dimension to walk for a filter (``None``: read the matches whole)."""
    if schedule_id is not None:
        return f"schedule={schedule_id}"
    if dead_lettered:
        return "dead"
    unknown = math.inf  # no counts: any number of jobs may match
    options: list[tuple[float, str]] = []
    if status is not None:
        n = counts.by_status.get(status.value, 0) if counts else unknown
        dim = status_dimension(status)
        if dim is None and n <= DIRECT_MAX:
            return None
        if dim is not None:
            options.append((n, dim))
    if job_type is not None:
        options.append((counts.by_type.get(job_type, 0) if counts else unknown, f"type={job_type}"))
    return min(options)[1] if options else "all"


def _key(doc: Document) -> tuple[datetime, str]:
    return doc["created_at"], str(doc["_id"])


def ordered(docs: list[Document], after: tuple[datetime, str] | None) -> list[Document]:
    """Newest first, only those after the cursor's position."""
    if after is not None:
        docs = [d for d in docs if _key(d) < after]
    return sorted(docs, key=_key, reverse=True)


def page_of(docs: list[Document], limit: int, stopped: str | None) -> Page:
    jobs = [Job.model_validate(d) for d in docs[:limit]]
    if len(docs) > limit:
        return Page(jobs=jobs, next_cursor=encode_cursor(jobs[-1]))
    return Page(jobs=jobs, next_cursor=stopped)
