"""Retention: finished jobs and their deliveries go once expired; waiting,
running and dead-lettered ones never do."""

from __future__ import annotations

import asyncio
import time

import pytest
from pymongo import AsyncMongoClient
from pytest_httpserver import HTTPServer

from conveyor_kernel.mongo import Document
from conveyor_kernel.notifications import new_secret
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
