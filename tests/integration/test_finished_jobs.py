"""Finished jobs live in ``finished_jobs`` (conveyor_kernel.finished), against the
real store: a finish is an insert that moves the job, two finishers race and one
wins, a reopened job moves back, and what a crash between two writes leaves (a
stale document in the other collection) is never shown and is removed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from conveyor_kernel.finished import FINISHED_COLLECTION
from conveyor_kernel.model import Job, JobStatus, JobSubmission, utcnow
from conveyor_kernel.retention import Retention
from conveyor_kernel.store import JOBS_COLLECTION, JobStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
Mongo = AsyncMongoClient[dict[str, Any]]


async def _queued(store: JobStore) -> Job:
    job = Job.from_submission(JobSubmission(type="echo"), default_timeout_s=30)
    await store.insert(job)
    return job


def _ended(job: Job, status: JobStatus = JobStatus.COMPLETED, **update: object) -> Job:
    return job.model_copy(update={"status": status, "finished_at": utcnow(), **update})


async def _docs(mongo: Mongo, namespace: str, job_id: str) -> tuple[Any, Any]:
    db = mongo[f"conveyor_{namespace}"]
    return (
        await db[JOBS_COLLECTION].find_one({"_id": job_id}),
        await db[FINISHED_COLLECTION].find_one({"_id": job_id}),
    )


async def _listed(store: JobStore, status: JobStatus) -> list[str]:
    return [j.id for j in (await store.list(status=status, limit=50)).jobs]


async def test_a_finish_moves_the_job_with_an_insert(
    store: JobStore, mongo: Mongo, namespace: str
) -> None:
    await store.ensure_indexes()
    job = await _queued(store)
    done = await store.compare_and_set(_ended(job, result={"ok": 1}))
    assert done is not None
    assert done.rev == job.rev + 1
    open_doc, finished_doc = await _docs(mongo, namespace, job.id)
    assert open_doc is None
    assert finished_doc["status"] == "completed"
    assert finished_doc["result"] == {"ok": 1}
    got = await store.get(job.id)
    assert got is not None
    assert got.status is JobStatus.COMPLETED
    assert got.rev == done.rev
    assert await _listed(store, JobStatus.COMPLETED) == [job.id]
    assert await _listed(store, JobStatus.QUEUED) == []
    # A later change of the finished job (e.g. its dead letter cleared) stays there.
    again = await store.compare_and_set(done.model_copy(update={"result": {"ok": 2}}))
    assert again is not None
    assert (await _docs(mongo, namespace, job.id))[1]["result"] == {"ok": 2}
    assert await store.compare_and_set(done) is None  # an old rev loses


async def test_of_two_racing_finishers_exactly_one_wins(store: JobStore) -> None:
    await store.ensure_indexes()
    jobs = [await _queued(store) for _ in range(10)]
    for job in jobs:
        outcomes = await asyncio.gather(
            store.compare_and_set(_ended(job)),
            store.compare_and_set(_ended(job, JobStatus.CANCELLED)),
        )
        winners = [o for o in outcomes if o is not None]
        assert len(winners) == 1
        got = await store.get(job.id)
        assert got is not None
        assert got.status is winners[0].status


async def test_a_reopened_job_moves_back_and_a_stale_finished_copy_is_ignored(
    store: JobStore, mongo: Mongo, namespace: str
) -> None:
    await store.ensure_indexes()
    job = await _queued(store)
    failed = await store.compare_and_set(_ended(job, JobStatus.FAILED, error="boom"))
    assert failed is not None
    reopened = await store.compare_and_set(
        failed.model_copy(update={"status": JobStatus.QUEUED, "finished_at": None})
    )
    assert reopened is not None
    assert reopened.reopened_of == failed.rev
    open_doc, finished_doc = await _docs(mongo, namespace, job.id)
    assert finished_doc is None
    assert open_doc["status"] == "queued"
    # A crash between the reopen's two writes would have left the failed copy.
    await mongo[f"conveyor_{namespace}"][FINISHED_COLLECTION].insert_one(failed.to_document())
    assert await _listed(store, JobStatus.FAILED) == []
    assert await _listed(store, JobStatus.QUEUED) == [job.id]
    got = await store.get(job.id)
    assert got is not None
    assert got.status is JobStatus.QUEUED
    assert (await _docs(mongo, namespace, job.id))[1] is None  # the read removed it
    # The stale copy back again: the job still finishes (it replaces that copy).
    await mongo[f"conveyor_{namespace}"][FINISHED_COLLECTION].insert_one(failed.to_document())
    done = await store.compare_and_set(_ended(reopened))
    assert done is not None
    got = await store.get(job.id)
    assert got is not None
    assert got.status is JobStatus.COMPLETED


async def test_an_open_copy_left_by_a_finish_is_never_shown_and_is_removed(
    store: JobStore, mongo: Mongo, namespace: str
) -> None:
    await store.ensure_indexes()
    job = await _queued(store)
    assert await store.compare_and_set(_ended(job)) is not None
    # A crash between the finish's insert and its delete leaves the open copy.
    await mongo[f"conveyor_{namespace}"][JOBS_COLLECTION].insert_one(job.to_document())
    assert await _listed(store, JobStatus.QUEUED) == []
    unfiltered = list((await store.list(limit=50)).jobs)
    assert [(j.id, j.status) for j in unfiltered] == [(job.id, JobStatus.COMPLETED)]
    got = await store.get(job.id)
    assert got is not None
    assert got.status is JobStatus.COMPLETED
    assert (await _docs(mongo, namespace, job.id))[0] is None


async def test_retention_deletes_finished_jobs_and_their_leftovers_not_reopened_jobs(
    store: JobStore, mongo: Mongo, namespace: str
) -> None:
    db = f"conveyor_{namespace}"
    await store.ensure_indexes()
    now = [utcnow()]
    retention = Retention(mongo, db, store.tally, clock=lambda: now[0])
    await retention.ensure_indexes()
    expires = now[0] + timedelta(seconds=30)
    gone, left, reopened = [await _queued(store) for _ in range(3)]
    done = await store.compare_and_set(_ended(gone, expires_at=expires))
    done_left = await store.compare_and_set(_ended(left, expires_at=expires))
    failed = await store.compare_and_set(_ended(reopened, JobStatus.FAILED, expires_at=expires))
    assert done is not None
    assert done_left is not None
    assert failed is not None
    back = await store.compare_and_set(
        failed.model_copy(update={"status": JobStatus.QUEUED, "expires_at": None})
    )
    assert back is not None
    await mongo[db][FINISHED_COLLECTION].insert_one(failed.to_document())  # reopen's leftover
    await mongo[db][JOBS_COLLECTION].insert_one(left.to_document())  # finish's leftover
    now[0] = expires + timedelta(seconds=1)
    sweep = await retention.sweep_once(500)
    assert sweep.deleted == 3  # the two finished jobs and the reopened job's stale copy
    for job_id in (gone.id, left.id):
        assert await _docs(mongo, namespace, job_id) == (None, None)
        assert await store.get(job_id) is None
    got = await store.get(reopened.id)
    assert got is not None
    assert got.status is JobStatus.QUEUED
