"""The MongoDB client every process opens, and the one error taxonomy for it.

:func:`store_errors` turns driver errors into :class:`StoreUnavailableError`
(an outage: retry) or :class:`DocumentRefusedError` (bad data: do not).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC
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
from conveyor_kernel.settings import ConveyorSettings

log = get_logger(__name__)
DEFAULT_MAX_POOL = 16

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


async def insert_new(col: AsyncCollection[Document], doc: Document) -> bool:
    """Insert ``doc`` unless its ``_id`` exists: ``False`` then. The unique ``_id``
    decides atomically on MongoDB and FerretDB alike (a first-writer-wins claim)."""
    try:
        async with store_errors():
            await col.insert_one(doc)
    except DuplicateKeyError:
        return False
    return True
