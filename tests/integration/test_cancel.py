"""POST /v1/jobs/{id}/cancel in every state."""

from __future__ import annotations

import asyncio

import pytest

from conveyor_kernel.broker import queue_stats
from conveyor_kernel.topology import build_topology
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_cancel_queued_job_is_skipped_when_its_message_arrives(stack: Stack, amqp) -> None:
    client = await stack.start_api()
    job = await stack.submit("echo", payload={"never": True})
    resp = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 200
    assert resp.json()["status"] == "cancelled"
    worker = await stack.start_worker()
    channel = await amqp.channel()
    work = build_topology(stack.namespace).work_queue
    for _ in range(100):
        if (await queue_stats(channel, work)).messages == 0 and "skipping message" in worker.log():
            break
        await asyncio.sleep(0.1)
    assert "skipping message" in worker.log()
    final = (await client.get(f"/v1/jobs/{job['id']}")).json()
    assert final["status"] == "cancelled"
    assert final["attempts"] == []
    assert final["result"] is None


async def test_cancel_scheduled_job(stack: Stack) -> None:
    client = await stack.start_api()
    job = await stack.submit("echo", delay_s=60)
    resp = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "cancelled"
    assert body["next_attempt_at"] is None


async def test_cancel_retrying_job_stops_its_retries(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    backoff = {"base_s": 3, "factor": 1, "max_s": 3, "jitter": False}
    job = await stack.submit("fail-absolute", max_retries=5, backoff=backoff)
    await stack.wait_job(job["id"], {"retrying"})
    resp = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 200
    await asyncio.sleep(4)  # past the retry's due time
    final = (await client.get(f"/v1/jobs/{job['id']}")).json()
    assert final["status"] == "cancelled"
    assert len(final["attempts"]) == 1


async def test_cancel_running_job_stops_it_cooperatively(stack: Stack) -> None:
    client = await stack.start_api()
    worker = await stack.start_worker()
    job = await stack.submit("sleep", payload={"seconds": 60})
    await stack.wait_job(job["id"], {"running"})
    resp = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 202
    assert resp.json()["cancel_requested_at"] is not None
    done = await stack.wait_job(job["id"], timeout=20)
    assert done["status"] == "cancelled"
    assert done["attempts"][0]["outcome"] == "cancelled"
    assert done["attempts"][0]["duration_s"] < 20
    assert worker.alive()
    # the worker carries on with other work
    after = await stack.submit("echo")
    assert (await stack.wait_job(after["id"]))["status"] == "completed"


async def test_cancel_finished_job_is_409_and_cancelled_jobs_can_be_retried(
    stack: Stack,
) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("echo")
    await stack.wait_job(job["id"])
    resp = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "job_finished"
    assert (await client.post("/v1/jobs/nope/cancel")).status_code == 404
    other = await stack.submit("echo", delay_s=60)
    await client.post(f"/v1/jobs/{other['id']}/cancel")
    clone = await client.post(f"/v1/jobs/{other['id']}/retry")
    assert clone.status_code == 201
    assert (await client.delete(f"/v1/jobs/{other['id']}")).status_code == 204


async def test_cancelled_waiting_job_never_runs_even_from_a_fresh_message(stack: Stack) -> None:
    """A worker runs fresh messages from the job they carry, without a read; a
    cancel request reaching it over the control fanout must still stop the job."""
    client = await stack.start_api()
    worker = await stack.start_worker(worker_concurrency=1)
    blocker = await stack.submit("sleep", payload={"seconds": 2})
    await stack.wait_job(blocker["id"], {"running"})
    waiting = await stack.submit("echo", payload={"never": True})  # behind the blocker
    resp = await client.post(f"/v1/jobs/{waiting['id']}/cancel")
    assert resp.status_code == 200
    assert (await stack.wait_job(blocker["id"]))["status"] == "completed"
    for _ in range(100):
        if "skipping message" in worker.log():
            break
        await asyncio.sleep(0.1)
    final = (await client.get(f"/v1/jobs/{waiting['id']}")).json()
    assert final["status"] == "cancelled"
    assert final["attempts"] == []
    assert final["result"] is None
    assert "skipping message" in worker.log()
