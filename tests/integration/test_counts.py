"""Maintained job counts (conveyor_kernel.counts) against the real store: every
write's effect is counted once, deltas fold into one snapshot, and a fold that
died half-way or raced another replica counts nothing twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from pymongo import AsyncMongoClient

from conveyor_kernel.counts import COUNTS_COLLECTION, SNAPSHOT_ID, JobCounts, Stats
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.model import Job, JobStatus, JobSubmission, utcnow
from conveyor_kernel.mongo import Document, make_client
from conveyor_kernel.store import DeleteResult, JobStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LEASE = timedelta(seconds=5)


def _new(type_: str = "echo") -> Job:
    return Job.from_submission(JobSubmission(type=type_), default_timeout_s=30)


@pytest.fixture
async def counts(mongo: AsyncMongoClient[Document], namespace: str) -> JobCounts:
    counts = JobCounts(mongo, f"conveyor_{namespace}")
    await counts.ensure_indexes()
    return counts


async def test_each_write_moves_the_counts_once(
    mongo: AsyncMongoClient[Document], store: JobStore, counts: JobCounts, namespace: str
) -> None:
    a, b, c = _new(), _new(), _new("sleep")
    await store.insert_many([a, b, c])
    running = await store.compare_and_set(a.model_copy(update={"status": JobStatus.RUNNING}))
    assert running is not None
    done = await store.compare_and_set(
        running.model_copy(update={"status": JobStatus.COMPLETED, "finished_at": utcnow()})
    )
    assert done is not None
    # A lost compare-and-set (stale rev) changes nothing.
    assert await store.compare_and_set(a.model_copy(update={"status": JobStatus.FAILED})) is None
    assert await store.delete_queued([c]) == 1
    assert await store.delete_finished(b.id) is DeleteResult.NOT_FINISHED
    expected = Stats(by_status={"queued": 1, "completed": 1}, by_type={"echo": 2}, total=2)
    assert await counts.read(store.tally) == expected  # pending, not yet flushed

    await counts.flush(store.tally)
    other = JobCounts(mongo, f"conveyor_{namespace}")  # another process reads what was flushed
    assert await other.read() == expected
    assert await counts.fold("api-1", LEASE) == 1
    assert await other.read() == expected
    assert await store.delete_finished(done.id) is DeleteResult.DELETED
    await counts.flush(store.tally)
    assert await other.read() == Stats(by_status={"queued": 1}, by_type={"echo": 1}, total=1)
    # The truth, by a full count, agrees.
    assert (await store.stats(10)).by_status == {"queued": 1}


async def test_a_fold_that_died_between_its_writes_counts_nothing_twice(
    mongo: AsyncMongoClient[Document], store: JobStore, counts: JobCounts, namespace: str
) -> None:
    db = f"conveyor_{namespace}"
    await store.insert_many([_new() for _ in range(3)])
    await counts.flush(store.tally)
    col = mongo[db][COUNTS_COLLECTION]
    deltas = [d["_id"] async for d in col.find({"_id": {"$regex": "^delta:"}})]
    assert len(deltas) == 1
    # The snapshot was written with the delta folded in, then the folder died.
    row = {"s": "queued", "t": "echo", "n": 3}
    await col.replace_one({"_id": SNAPSHOT_ID}, {"_id": SNAPSHOT_ID, "n": [row], "folded": deltas})
    three = Stats(by_status={"queued": 3}, by_type={"echo": 3}, total=3)
    assert await counts.read() == three
    await asyncio.sleep(LEASE.total_seconds())  # the next window's lease
    assert await counts.fold("api-2", LEASE) == 0  # nothing new: the leftover is removed
    assert await col.find_one({"_id": deltas[0]}) is None
    assert await counts.read() == three


async def test_replicas_folding_at_once_fold_once(
    mongo: AsyncMongoClient[Document], store: JobStore, namespace: str
) -> None:
    db = f"conveyor_{namespace}"
    replicas = [JobCounts(mongo, db) for _ in range(3)]
    await replicas[0].ensure_indexes()
    await store.insert_many([_new() for _ in range(5)])
    await replicas[0].flush(store.tally)
    folded = await asyncio.gather(*(r.fold(f"api-{i}", LEASE) for i, r in enumerate(replicas)))
    assert sorted(folded) == [0, 0, 1]
    assert await replicas[1].read() == Stats(by_status={"queued": 5}, by_type={"echo": 5}, total=5)


async def test_a_failed_flush_keeps_its_changes(
    mongo: AsyncMongoClient[Document], store: JobStore, namespace: str
) -> None:
    await store.insert_many([_new()])
    down = make_client("mongodb://127.0.0.1:1", 300, "conveyor-tests-down")
    try:
        with pytest.raises(StoreUnavailableError):
            await JobCounts(down, f"conveyor_{namespace}").flush(store.tally)
    finally:
        await down.close()
    assert store.tally.pending() == Counter({("queued", "echo"): 1})
    counts = JobCounts(mongo, f"conveyor_{namespace}")
    assert await counts.flush(store.tally) == 1
    assert store.tally.pending() == Counter()
    assert await counts.flush(store.tally) == 0  # nothing pending: no write
    assert (await counts.read()).total == 1
