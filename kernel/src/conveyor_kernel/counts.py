"""Job counts by status and type, kept as jobs change: what ``/v1/stats``, the
dashboard and the metrics show, at a cost that does not depend on how many jobs
are stored.

* Every process that writes jobs adds the effect of each successful write
  (:class:`conveyor_kernel.store.JobStore`: an insert, a status change, a delete)
  to its in-memory :class:`Tally`.
* :func:`run_flusher` inserts the pending changes as one ``delta`` document
  every ``flush_s``. Inserts only: FerretDB v1 does not apply concurrent updates
  atomically, so an ``$inc`` shared by all workers could be lost.
* An API folds the deltas into the ``snapshot`` document every ``fold_s``
  (:meth:`JobCounts.fold`), under a lease that one insert with a unique ``_id``
  grants, so one replica folds at a time. The snapshot lists the deltas it has
  folded; the next fold deletes those first, so a fold that died between its two
  writes counts nothing twice.
* A read is one query over that small collection (the snapshot, the deltas not
  yet folded and the lease documents) plus the reader's own pending changes, so
  the API's own writes show at once and other processes' within ``flush_s``.

A process killed outright loses its last ``flush_s`` of changes, and the counts
are then off by those; a graceful stop flushes. A store that held jobs before
the counts existed starts them at zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import pymongo
from pymongo import AsyncMongoClient

from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import utcnow
from conveyor_kernel.mongo import Document, insert_new, store_errors

log = get_logger(__name__)

COUNTS_COLLECTION = "job_counts"
SNAPSHOT_ID = "snapshot"
LEASE_PREFIX = "fold:"

Key = tuple[str, str]  # (status, type)


@dataclass(frozen=True)
class Stats:
    by_status: dict[str, int]
    by_type: dict[str, int]
    total: int

    @classmethod
    def of(cls, counts: Counter[Key]) -> Stats:
        by_status: Counter[str] = Counter()
        by_type: Counter[str] = Counter()
        for (status, type_), n in counts.items():
            if n > 0:  # a count can only go negative by a lost delta: show none
                by_status[status] += n
                by_type[type_] += n
        return cls(by_status=dict(by_status), by_type=dict(by_type), total=by_status.total())


class Tally:
    """One process's count changes not yet flushed."""

    def __init__(self) -> None:
        self._pending: Counter[Key] = Counter()

    def add(self, status: str, type_: str, n: int = 1) -> None:
        self._pending[(status, type_)] += n

    def move(self, type_: str, old: str, new: str) -> None:
        if old != new:
            self._pending[(old, type_)] -= 1
            self._pending[(new, type_)] += 1

    def pending(self) -> Counter[Key]:
        return Counter({k: n for k, n in self._pending.items() if n})

    def take(self) -> Counter[Key]:
        taken, self._pending = self.pending(), Counter()
        return taken

    def put_back(self, taken: Counter[Key]) -> None:
        self._pending.update(taken)


def _rows(counts: Counter[Key]) -> list[dict[str, str | int]]:
    """As objects: FerretDB v1 stores no nested arrays, and a type may contain '.'."""
    return [{"s": s, "t": t, "n": n} for (s, t), n in sorted(counts.items()) if n]


def _counter(rows: Iterable[Document]) -> Counter[Key]:
    out: Counter[Key] = Counter()
    for row in rows:
        out[(str(row["s"]), str(row["t"]))] += int(row["n"])
    return out


class JobCounts:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._col = client[db_name][COUNTS_COLLECTION]

    async def ensure_indexes(self) -> None:
        """The first start of a store: no jobs, so every count is zero."""
        await insert_new(self._col, {"_id": SNAPSHOT_ID, "n": [], "folded": []})

    async def flush(self, tally: Tally) -> int:
        """Insert ``tally``'s pending changes as one delta; the number of keys."""
        taken = tally.take()
        if not taken:
            return 0
        try:
            async with store_errors():
                await self._col.insert_one(
                    {"_id": f"delta:{uuid.uuid4().hex}", "at": utcnow(), "n": _rows(taken)}
                )
        except BaseException:
            tally.put_back(taken)  # flushed next time (an insert that did land: counted twice)
            raise
        return len(taken)

    async def read(self, own: Tally | None = None, timeout_s: float | None = None) -> Stats:
        """The counts: the snapshot, the deltas it has not folded, and ``own``."""
        async with store_errors():
            with pymongo.timeout(timeout_s):
                docs = await self._col.find({}).to_list()
        counts, _, _ = _fold(docs)
        if own is not None:
            counts.update(own.pending())
        return Stats.of(counts)

    async def fold(self, owner: str, lease: timedelta) -> int:
        """Fold the deltas into the snapshot if this caller wins the lease for the
        current window; the number of deltas folded."""
        now = utcnow()
        window = int(now.timestamp() // lease.total_seconds())
        if not await insert_new(self._col, {"_id": f"{LEASE_PREFIX}{window}", "owner": owner}):
            return 0  # another replica folds this window
        async with store_errors():
            docs = await self._col.find({}).to_list()
            counts, deltas, done = _fold(docs)
            stale = done + [d["_id"] for d in docs if _stale_lease(d["_id"], window)]
            for doc_id in stale:  # the last fold's deltas (it may have died before this)
                await self._col.delete_one({"_id": doc_id})
            if not deltas or utcnow() - now > lease / 2:
                return 0  # nothing to fold, or too late: the next window's fold may have begun
            await self._col.replace_one(
                {"_id": SNAPSHOT_ID}, {"_id": SNAPSHOT_ID, "n": _rows(counts), "folded": deltas}
            )
            for doc_id in deltas:
                await self._col.delete_one({"_id": doc_id})
        return len(deltas)


def _stale_lease(doc_id: str, window: int) -> bool:
    return doc_id.startswith(LEASE_PREFIX) and doc_id != f"{LEASE_PREFIX}{window}"


def _fold(docs: list[Document]) -> tuple[Counter[Key], list[str], list[str]]:
    """(counts, ids of the deltas not yet in the snapshot, ids already in it)."""
    snapshot = next((d for d in docs if d["_id"] == SNAPSHOT_ID), None)
    counts = _counter(snapshot["n"]) if snapshot else Counter()
    folded = set(snapshot["folded"]) if snapshot else set()
    deltas: list[str] = []
    done: list[str] = []
    for doc in docs:
        doc_id = str(doc["_id"])
        if not doc_id.startswith("delta:"):
            continue
        if doc_id in folded:
            done.append(doc_id)
        else:
            counts.update(_counter(doc["n"]))
            deltas.append(doc_id)
    return counts, deltas, done


async def run_flusher(counts: JobCounts, tally: Tally, interval_s: float) -> None:
    """Flush every ``interval_s`` until cancelled, and once more then (a graceful
    stop loses no count change)."""
    while True:
        try:
            await asyncio.sleep(interval_s)
        except asyncio.CancelledError:
            with contextlib.suppress(StoreUnavailableError):
                await counts.flush(tally)
            raise
        try:
            await counts.flush(tally)
        except StoreUnavailableError as exc:
            log.warning("job counts: flush failed; will retry", error=str(exc))
        except Exception:
            log.exception("job counts: flush crashed; will retry")


async def run_folder(counts: JobCounts, owner: str, interval_s: float) -> None:
    """Fold every ``interval_s`` (when this replica wins the window) until cancelled."""
    lease = timedelta(seconds=interval_s)
    while True:
        await asyncio.sleep(interval_s)
        try:
            await counts.fold(owner, lease)
        except StoreUnavailableError as exc:
            log.warning("job counts: fold failed; will retry", error=str(exc))
        except Exception:
            log.exception("job counts: fold crashed; will retry")
