"""Finished jobs live in their own, insert-only collection: a job ends with an insert.

On FerretDB v1 an update costs about 1.8 ms of store CPU and a batched insert
about 0.15 ms (``../shared/notes/ferretdb.md``), and every job ends once. So the
write that finishes a job is an insert into ``finished_jobs`` (group-committed:
the finishes a process makes meanwhile share one ``insert_many``), and the open
document it leaves in ``jobs`` is deleted by bucket (``created_bucket`` plus
``_id $in``, both pushed down), also group-committed, before the writer returns.

A job therefore lives in ``jobs`` while it is open and in ``finished_jobs`` once
it has ended. Both hold it only between the two writes, or after a crash between
them; :func:`newer` decides which one is the job then:

* the finished document, unless the open one was *reopened* from it (a retry or a
  redrive of a finished job stores ``reopened_of``, the finished ``rev`` it
  reopened, then deletes the finished document);
* a reader that sees both removes the stale one (:class:`JobStore.get`).

The unique ``_id`` of ``finished_jobs`` is the finishing compare-and-set: of two
writers ending the same open job (a worker's outcome and an API cancel), the
first insert wins, atomically on MongoDB and on FerretDB v1 alike, whose updates
are not atomic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from conveyor_kernel.mongo import Document, store_errors

FINISHED_COLLECTION = "finished_jobs"
REOPENED_OF = "reopened_of"  # on an open document reopened from a finished one
DUPLICATE_KEY = 11000
MAX_BATCH = 500


def newer(open_doc: Document | None, finished_doc: Document | None) -> Document | None:
    """The job's current document of the two (either may be missing)."""
    if open_doc is None or finished_doc is None:
        return open_doc if finished_doc is None else finished_doc
    if open_doc.get(REOPENED_OF) == finished_doc.get("rev"):
        return open_doc
    return finished_doc


async def by_ids(col: AsyncCollection[Document], docs: Iterable[Document]) -> dict[Any, Document]:
    """The documents of ``col`` with the ids of ``docs``: one query per
    ``created_bucket`` (pushed down), never a scan."""
    groups: dict[str, list[Any]] = {}
    for doc in docs:
        groups.setdefault(str(doc["created_bucket"]), []).append(doc["_id"])
    found: dict[Any, Document] = {}
    async with store_errors():
        for bucket, ids in groups.items():
            async for doc in col.find({"created_bucket": bucket, "_id": {"$in": ids}}):
                found[doc["_id"]] = doc
    return found


def merge(open_docs: Iterable[Document], finished_docs: Iterable[Document]) -> list[Document]:
    """Each job once, as :func:`newer` picks it, from two query results."""
    by_id: dict[Any, Document] = {doc["_id"]: doc for doc in finished_docs}
    for doc in open_docs:
        by_id[doc["_id"]] = newer(doc, by_id.get(doc["_id"])) or doc
    return list(by_id.values())


class GroupInsert:
    """Inserts from concurrent callers, flushed as one unordered ``insert_many``
    while no other flush of this collection is in flight (a group commit)."""

    def __init__(self, col: AsyncCollection[Document]) -> None:
        self._col = col
        self._pending: list[tuple[Document, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def insert(self, doc: Document) -> bool:
        """``False`` if a document with this ``_id`` exists; store errors raise
        (:func:`conveyor_kernel.mongo.store_errors`)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((doc, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all())
        return await asyncio.shield(future)  # a cancelled caller's insert still lands

    async def _flush_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                duplicates = await self._write([doc for doc, _ in batch])
            except Exception as exc:  # noqa: BLE001  # each caller of the batch gets it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for i, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result(i not in duplicates)

    async def _write(self, docs: list[Document]) -> set[int]:
        """The indexes of ``docs`` refused as duplicates."""
        async with store_errors():
            try:
                await self._col.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors") or []
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                return {int(e["index"]) for e in errors}
        return set()


class GroupDelete:
    """Deletes of open documents left by a finish, from concurrent callers, flushed
    as one ``delete_many`` per ``created_bucket`` (FerretDB v1 pushes the bucket
    down, then matches the ids among its few documents). Only a document at most
    at ``rev`` goes: one reopened since (a higher ``rev``) stays."""

    def __init__(self, col: AsyncCollection[Document]) -> None:
        self._col = col
        self._pending: list[tuple[str, Document, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def delete(self, bucket: str, doc_id: Any, rev: int) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((bucket, {"_id": doc_id, "rev": {"$lte": rev}}, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all())
        await asyncio.shield(future)

    async def _flush_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            by_bucket: dict[str, list[Document]] = {}
            for bucket, match, _ in batch:
                by_bucket.setdefault(bucket, []).append(match)
            try:
                async with store_errors():
                    for bucket, matches in by_bucket.items():
                        await self._col.delete_many({"created_bucket": bucket, "$or": matches})
            except Exception as exc:  # noqa: BLE001  # each caller of the batch gets it
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, _, future in batch:
                if not future.done():
                    future.set_result(None)


HOME = "_conveyor_home"  # a listed document's collection (never stored)
OPEN, DONE = "jobs", FINISHED_COLLECTION


def _flip(home: str) -> str:
    return DONE if home == OPEN else OPEN


def merge_tagged(docs: list[Document]) -> list[Document]:
    """Each job once, from both collections' complete answers to one query."""
    return merge([d for d in docs if d[HOME] == OPEN], [d for d in docs if d[HOME] == DONE])


class Homes:
    """Reads across the two collections, for lists."""

    def __init__(
        self, open_col: AsyncCollection[Document], done_col: AsyncCollection[Document]
    ) -> None:
        self._cols = {OPEN: open_col, DONE: done_col}

    async def both(self, query: Document) -> list[Document]:
        """The documents matching ``query`` in both collections, each tagged with its
        collection (``HOME``)."""
        async with store_errors():
            open_docs, done_docs = await asyncio.gather(
                self._cols[OPEN].find(query).to_list(), self._cols[DONE].find(query).to_list()
            )
        return [{**d, HOME: OPEN} for d in open_docs] + [{**d, HOME: DONE} for d in done_docs]

    async def current(self, docs: list[Document]) -> list[Document]:
        """Those of ``docs`` that are their job's current document, each checked
        against the other collection (a filter on status can match a stale one)."""
        mine = {(d[HOME], d["_id"]): d for d in docs}
        found: dict[str, dict[Any, Document]] = {}
        for home in (OPEN, DONE):
            unpaired = [d for d in docs if d[HOME] == home and (_flip(home), d["_id"]) not in mine]
            found[_flip(home)] = await by_ids(self._cols[_flip(home)], unpaired) if unpaired else {}
        out = []
        for d in docs:
            there = mine.get((_flip(d[HOME]), d["_id"])) or found[_flip(d[HOME])].get(d["_id"])
            pair = (d, there) if d[HOME] == OPEN else (there, d)
            if newer(*pair) is d:
                out.append(d)
        return out

    async def current_page(self, docs: list[Document], limit: int) -> list[Document]:
        """The first ``limit`` + 1 current ones of ``docs`` (ordered), checking only as
        many as the page needs."""
        out: list[Document] = []
        at = 0
        while len(out) <= limit and at < len(docs):
            window = docs[at : at + limit + 1 - len(out)]
            at += len(window)
            out.extend(await self.current(window))
        return out
