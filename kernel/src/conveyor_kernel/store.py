"""The MongoDB job store (PyMongo's async API).

Jobs live in ``<db>.jobs`` keyed by ``_id``. Every state change is a
compare-and-set on ``rev`` (``replace_one({_id, rev})``), so on MongoDB a
redelivered or duplicated message can never overwrite a newer state: the loser
re-reads and decides again. After its insert, a job document has one writer at
a time (the worker holding its message): FerretDB v1 does not apply updates
atomically, so the design must not rely on concurrent writers being serialised.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import pymongo
from bson.errors import BSONError
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    DocumentTooLarge,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    WriteError,
)
from pymongo.monitoring import CommandListener

from conveyor_kernel.errors import DocumentRefusedError, StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.metrics import StoreCommandCounter
from conveyor_kernel.model import FINISHED_STATUSES, Job, JobProgress, JobStatus, utcnow
from conveyor_kernel.settings import ConveyorSettings

JOBS_COLLECTION = "jobs"
DEFAULT_MAX_POOL = 16
log = get_logger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Document = dict[str, Any]


NOT_IMPLEMENTED = 238  # MongoDB error code FerretDB v1 returns for TTL index options


async def create_missing_indexes(
    col: AsyncCollection[Document], wanted: list[pymongo.IndexModel]
) -> None:
    """Create those of ``wanted`` whose name does not exist yet.

    Only missing indexes are created: re-issuing ``createIndexes`` for existing
    compound descending indexes crashes FerretDB v1's connection handler.
    """
    async with store_errors():
        existing = set(await col.index_information())
        missing = [m for m in wanted if m.document["name"] not in existing]
        if missing:
            await col.create_indexes(missing)


async def ensure_ttl_index(col: AsyncCollection[Document], field: str, *, after_s: int = 0) -> None:
    """A TTL index on ``field`` (documents go ``after_s`` after it). Servers without
    TTL support (FerretDB v1) get a plain index; callers treat expired documents as
    absent or sweep them, so correctness never depends on the TTL monitor."""
    name = f"{field}_ttl"
    try:
        await create_missing_indexes(
            col, [pymongo.IndexModel(field, name=name, expireAfterSeconds=after_s)]
        )
    except StoreUnavailableError as exc:
        cause = exc.__cause__
        if not isinstance(cause, OperationFailure) or cause.code != NOT_IMPLEMENTED:
            raise
        log.warning(
            "server lacks TTL indexes; a plain index instead (expiry does not depend on it)",
            collection=col.name,
        )
        await create_missing_indexes(col, [pymongo.IndexModel(field, name=name)])


class InvalidCursorError(ValueError):
    """A list cursor that this store did not produce."""


class DeleteResult(Enum):
    DELETED = "deleted"
    NOT_FOUND = "not_found"
    NOT_FINISHED = "not_finished"


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True)
class Stats:
    by_status: dict[str, int]
    by_type: dict[str, int]
    total: int


def make_client(
    url: str,
    timeout_ms: int,
    app_name: str,
    *,
    max_pool: int = DEFAULT_MAX_POOL,
    listeners: Sequence[CommandListener] = (),
) -> AsyncMongoClient[Document]:
    """A client; it connects lazily, so creating it never blocks.

    ``max_pool`` bounds the operations this process has in flight: FerretDB v1
    deadlocks once its PostgreSQL pool is exhausted (each update takes two of its
    connections), so the sum over all processes must stay well below that pool.
    """
    return AsyncMongoClient(
        url,
        maxPoolSize=max_pool,
        event_listeners=list(listeners),
        tz_aware=True,
        tzinfo=UTC,
        appname=app_name,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 2, 10_000),
        retryWrites=True,
    )


def open_client(
    settings: ConveyorSettings, app_name: str, registry: CollectorRegistry | None
) -> AsyncMongoClient[Document]:
    """The process's one client: pool bounded by ``mongodb_max_pool``, and every
    command counted in ``registry`` (``conveyor_store_commands_total``)."""
    return make_client(
        settings.mongodb_url,
        settings.mongodb_timeout_ms,
        app_name,
        max_pool=settings.mongodb_max_pool,
        listeners=[StoreCommandCounter(registry)] if registry is not None else [],
    )


def encode_cursor(job: Job) -> str:
    millis = (job.created_at - EPOCH) // timedelta(milliseconds=1)
    return base64.urlsafe_b64encode(f"{millis}:{job.id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        millis, job_id = raw.split(":", 1)
        return datetime.fromtimestamp(int(millis) / 1000, UTC), job_id
    except (ValueError, OverflowError, OSError, binascii.Error) as exc:
        raise InvalidCursorError(f"invalid cursor {cursor!r}") from exc


# Server error codes that mean "this document is not acceptable": BadValue,
# DollarPrefixedFieldName, InvalidDBRef, EmptyFieldName, DottedFieldName, object too large.
_REFUSAL_CODES = frozenset({2, 52, 55, 56, 57, 10334, 17419})


# FerretDB's PostgreSQL refusing a string it cannot hold (a NUL): SQLSTATE 22P05.
_UNSTORABLE_TEXT = "SQLSTATE 22P05"


def _refusal(exc: OperationFailure) -> bool:
    if _UNSTORABLE_TEXT in str(exc):
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors") or []
        return bool(errors) and all(e.get("code") in _REFUSAL_CODES for e in errors)
    return isinstance(exc, WriteError) and exc.code in _REFUSAL_CODES


@asynccontextmanager
async def store_errors() -> AsyncIterator[None]:
    """Translate driver errors into :class:`StoreUnavailableError` (the one taxonomy)."""
    try:
        yield
    except DuplicateKeyError:
        raise  # a fact about the data, not an outage
    except (BSONError, DocumentTooLarge, OverflowError) as exc:
        # Bad data in a document or a query (e.g. a lone surrogate): not an outage.
        raise DocumentRefusedError(f"{type(exc).__name__}: {exc}") from exc
    except OperationFailure as exc:
        if _refusal(exc):
            raise DocumentRefusedError(f"{type(exc).__name__}: {exc}") from exc
        raise StoreUnavailableError(f"MongoDB: {type(exc).__name__}: {exc}") from exc
    except PyMongoError as exc:
        raise StoreUnavailableError(f"MongoDB: {type(exc).__name__}: {exc}") from exc


class JobStore:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._client = client
        self._jobs: AsyncCollection[Document] = client[db_name][JOBS_COLLECTION]

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
            ],
        )

    async def insert(self, job: Job) -> None:
        async with store_errors():
            await self._jobs.insert_one(job.to_document())

    async def insert_many(self, jobs: list[Job]) -> None:
        """One bulk write (ordered: a failure stops it; callers compensate)."""
        async with store_errors():
            await self._jobs.insert_many([j.to_document() for j in jobs], ordered=True)

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
        async with store_errors():
            result = await self._jobs.replace_one(
                {"_id": job.id, "rev": expected}, new.to_document()
            )
        return new if result.matched_count == 1 else None

    async def set_progress(self, job_id: str, rev: int, progress: JobProgress) -> bool:
        """Record a running attempt's progress without a new ``rev`` (its owner's next
        compare-and-set still matches); a no-op once anyone else wrote the job."""
        async with store_errors():
            result = await self._jobs.update_one(
                {"_id": job_id, "rev": rev}, {"$set": {"progress": progress.model_dump()}}
            )
        return result.matched_count == 1

    async def delete_queued(self, job_ids: list[str]) -> int:
        """Compensation for publishes the broker did not accept (never-started jobs only)."""
        async with store_errors():
            result = await self._jobs.delete_many(
                {
                    "_id": {"$in": job_ids},
                    "status": {"$in": [JobStatus.QUEUED.value, JobStatus.SCHEDULED.value]},
                    "attempts": [],
                }
            )
        return result.deleted_count

    async def clear_dead_letters(self, expires_at: datetime) -> int:
        """Drop every job from the dead-letter list (the jobs stay ``failed``, and are
        deleted at ``expires_at``)."""
        async with store_errors():
            result = await self._jobs.update_many(
                {"dead_letter": {"$ne": None}},
                {
                    "$set": {"dead_letter": None, "updated_at": utcnow(), "expires_at": expires_at},
                    "$inc": {"rev": 1},
                },
            )
        return result.modified_count

    async def delete_finished(self, job_id: str) -> DeleteResult:
        async with store_errors():
            result = await self._jobs.delete_one(
                {"_id": job_id, "status": {"$in": [s.value for s in FINISHED_STATUSES]}}
            )
            if result.deleted_count == 1:
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
    ) -> Page:
        """Newest first; ``cursor`` is the opaque ``next_cursor`` of the previous page."""
        query: dict[str, Any] = {}
        if status is not None:
            query["status"] = status.value
        if job_type is not None:
            query["type"] = job_type
        if schedule_id is not None:
            query["schedule_id"] = schedule_id
        if dead_lettered:
            query["dead_letter"] = {"$ne": None}
        if cursor:
            created, last_id = decode_cursor(cursor)
            query["$or"] = [
                {"created_at": {"$lt": created}},
                {"created_at": created, "_id": {"$lt": last_id}},
            ]
        async with store_errors():
            docs = (
                await self._jobs.find(query)
                .sort([("created_at", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)])
                .limit(limit + 1)
                .to_list()
            )
        jobs = [Job.model_validate(d) for d in docs[:limit]]
        next_cursor = encode_cursor(jobs[-1]) if len(docs) > limit and jobs else None
        return Page(jobs=jobs, next_cursor=next_cursor)

    async def stats(self, timeout_s: float) -> Stats:
        """Jobs by status and by type in one pass over the collection. It reads every
        job (slow on a big collection: FerretDB v1 takes ~0.3 ms a job), so callers
        cache it (``conveyor_api.statscache``); ``timeout_s`` bounds the operation."""
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
