"""Retention: finished jobs and their deliveries go once expired; waiting,
running and dead-lettered ones never do."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient
from pytest_httpserver import HTTPServer

from conveyor_kernel.model import Job, JobStatus, JobSubmission, expiry_bucket
from conveyor_kernel.mongo import Document
from conveyor_kernel.notifications import new_secret
from conveyor_kernel.retention import SKEW_S, Retention, Sweep
from conveyor_kernel.store import JobStore
from tests.receivers import Receiver
from tests.stack import Stack

pytestmark = pytest.mark.integration

WEBHOOK_SECRET = new_secret()


@pytest.mark.timeout(120)
async def test_finished_jobs_expire_and_the_rest_stay(
    stack: Stack, httpserver: HTTPServer, mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    receiver = Receiver(httpserver)
    client = await stack.start_api(
        job_retention_s=2,
        failed_job_retention_s=2,
        retention_sweep_s=0.5,
        webhook_secret=WEBHOOK_SECRET,
        notify_allowed_networks="127.0.0.1/32",
    )
    await stack.start_worker(worker_shutdown_grace_s=1)  # the sleep job need not finish
    await stack.start_notifier(
        webhook_secret=WEBHOOK_SECRET, notify_allowed_networks="127.0.0.1/32"
    )
    hooked = await stack.submit("echo", notify={"webhook": {"url": receiver.url}})
    kept_long = await stack.submit("echo", retention_s=3600)
    running = await stack.submit("sleep", payload={"seconds": 30})
    scheduled = await stack.submit("echo", delay_s=300)
    parked = await stack.submit("fail-absolute", max_retries=0)
    done = await stack.wait_job(hooked["id"])
    assert done["expires_at"] is not None
    await stack.deliveries(hooked["id"])  # delivered: one record
    await stack.wait_job(kept_long["id"])
    await stack.wait_job(parked["id"])
    await stack.wait_job(running["id"], {"running"})
    assert (await client.get(f"/v1/jobs/{parked['id']}")).json()["expires_at"] is None

    db = mongo[f"conveyor_{namespace}"]
    deadline = time.monotonic() + 30
    while (await client.get(f"/v1/jobs/{hooked['id']}")).status_code != 404:
        assert time.monotonic() < deadline, "the finished job was not deleted"
        await asyncio.sleep(0.3)
    assert await db["deliveries"].count_documents({"job_id": hooked["id"]}) == 0
    for job in (kept_long, running, scheduled, parked):  # not expired, not finished, parked
        resp = await client.get(f"/v1/jobs/{job['id']}")
        assert resp.status_code == 200, job
    assert (await client.get(f"/v1/jobs/{running['id']}")).json()["status"] == "running"

    # A purged dead letter expires after the failed-job retention.
    purge = await client.delete("/v1/dead-letters", params={"confirm": "true"})
    assert purge.status_code == 200
    deadline = time.monotonic() + 30
    while (await client.get(f"/v1/jobs/{parked['id']}")).status_code != 404:
        assert time.monotonic() < deadline, "the purged dead letter was not deleted"
        await asyncio.sleep(0.3)
    assert (await client.get(f"/v1/jobs/{kept_long['id']}")).status_code == 200


def _finished(expires_at: datetime, status: JobStatus = JobStatus.COMPLETED) -> Job:
    job = Job.from_submission(JobSubmission(type="echo"), default_timeout_s=30)
    return job.model_copy(update={"status": status, "expires_at": expires_at})


@pytest.mark.timeout(60)
async def test_the_sweep_reads_due_buckets_only_and_catches_up_after_downtime(
    mongo: AsyncMongoClient[Document], store: JobStore, namespace: str
) -> None:
    db = f"conveyor_{namespace}"
    t0 = datetime(2026, 12, 7, 11, 50, 3, tzinfo=UTC)
    now = [t0]
    retention = Retention(mongo, db, store.tally, clock=lambda: now[0])
    await retention.ensure_indexes()
    due = _finished(t0 + timedelta(seconds=30))
    later = _finished(t0 + timedelta(hours=2))
    running = _finished(t0 + timedelta(seconds=40), JobStatus.RUNNING)  # never deleted
    await store.insert_many([due, later, running])
    await mongo[db]["deliveries"].insert_one({"_id": "d1", "job_id": due.id})
    assert (await mongo[db]["jobs"].find_one({"_id": due.id}))["expires_bucket"] == (
        "2026-12-07T11:50:30Z"
    )

    assert await retention.sweep_once(500) == Sweep(deleted=0, behind=False)  # nothing due
    now[0] = t0 + timedelta(hours=1)  # the API was down for an hour: 360 buckets to walk
    assert await retention.sweep_once(500) == Sweep(deleted=1, behind=False)
    assert await store.get(due.id) is None
    assert store.tally.pending()[("completed", "echo")] == 1  # 2 inserted, 1 swept
    assert await mongo[db]["deliveries"].find_one({"_id": "d1"}) is None
    assert await store.get(later.id) is not None
    assert await store.get(running.id) is not None
    state = await mongo[db]["retention"].find_one({"_id": "jobs"})
    assert state is not None
    # Passed every bucket that ended SKEW_S ago, not the recent ones.
    swept_before = state["swept_before"]
    assert now[0] - timedelta(seconds=SKEW_S + 20) <= swept_before
    assert swept_before <= now[0] - timedelta(seconds=SKEW_S)

    # At most `batch` jobs per round; `behind` until the bucket is empty.
    burst = [_finished(now[0] - timedelta(seconds=1)) for _ in range(5)]
    await store.insert_many(burst)
    rounds = [await retention.sweep_once(2) for _ in range(3)]
    assert rounds == [Sweep(2, True), Sweep(2, True), Sweep(1, False)]
    assert all([await store.get(j.id) is None for j in burst])

    # Another replica starts from the stored cursor, not from its own start.
    replica = Retention(mongo, db, store.tally, clock=lambda: now[0])
    await replica.ensure_indexes()
    now[0] = later.expires_at + timedelta(seconds=1)  # type: ignore[operator]
    assert await replica.sweep_once(500) == Sweep(deleted=1, behind=False)
    assert await store.get(later.id) is None
    assert await store.get(running.id) is not None


def test_expiry_buckets_are_ten_second_slots() -> None:
    at = datetime(2026, 12, 7, 11, 50, 19, 999_000, tzinfo=UTC)
    assert expiry_bucket(at) == "2026-12-07T11:50:10Z"
    assert expiry_bucket(at + timedelta(milliseconds=1)) == "2026-12-07T11:50:20Z"
    job = _finished(at)
    assert job.to_document()["expires_bucket"] == "2026-12-07T11:50:10Z"
    assert "expires_bucket" not in job.model_copy(update={"expires_at": None}).to_document()
