"""Nothing is lost: worker SIGKILL and SIGTERM, broker restart, outbox relay, priorities."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from conveyor_kernel.model import Job, JobSubmission
from conveyor_kernel.outbox import Outbox
from conveyor_kernel.store import JobStore
from tests.infra import Infra
from tests.stack import Stack, next_parked

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


async def test_sigkilled_worker_loses_nothing(stack: Stack) -> None:
    await stack.start_api()
    victim = await stack.start_worker(worker_id="victim")
    job = await stack.submit("sleep", payload={"seconds": 2})
    await stack.wait_job(job["id"], {"running"})
    assert stack.stop(victim, signal.SIGKILL) == -signal.SIGKILL
    await stack.start_worker(worker_id="rescuer")
    done = await stack.wait_job(job["id"])
    assert done["status"] == "completed"
    attempts = done["attempts"]
    assert [a["worker"] for a in attempts] == ["victim", "rescuer"]
    assert [a["outcome"] for a in attempts] == ["lost", "completed"]
    assert "redelivered" in attempts[0]["error"]


async def test_sigterm_lets_in_flight_jobs_finish(stack: Stack) -> None:
    await stack.start_api()
    worker = await stack.start_worker(worker_shutdown_grace_s=20)
    job = await stack.submit("sleep", payload={"seconds": 1.5})
    await stack.wait_job(job["id"], {"running"})
    assert stack.stop(worker, signal.SIGTERM) == 0
    done = await stack.wait_job(job["id"], timeout=5)
    assert done["status"] == "completed"
    assert len(done["attempts"]) == 1
    assert "worker stopped" in worker.log()


async def test_sigterm_past_grace_requeues_the_job(stack: Stack) -> None:
    await stack.start_api()
    worker = await stack.start_worker(worker_shutdown_grace_s=0.3, worker_id="leaving")
    job = await stack.submit("sleep", payload={"seconds": 3}, max_retries=0)
    await stack.wait_job(job["id"], {"running"})
    assert stack.stop(worker, signal.SIGTERM) == 0
    requeued = await stack.wait_job(job["id"], {"queued"}, timeout=5)
    assert requeued["attempts"][0]["outcome"] == "interrupted"
    await stack.start_worker(worker_id="next")
    done = await stack.wait_job(job["id"])
    # an interrupted attempt does not spend the budget: max_retries=0 still completes
    assert done["status"] == "completed"
    assert [a["outcome"] for a in done["attempts"]] == ["interrupted", "completed"]


async def test_broker_restart_flips_readiness_and_recovers(stack: Stack, infra: Infra) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    before = await stack.submit("echo", payload={"phase": "before"})
    await stack.wait_job(before["id"])
    infra.broker.stop()
    try:
        deadline = time.monotonic() + 30
        while (await client.get("/readyz")).status_code != 503:
            assert time.monotonic() < deadline, "readyz never reported the broker down"
            await asyncio.sleep(0.2)
        assert (await client.get("/readyz")).json()["checks"]["rabbitmq"] == "unreachable"
        resp = await client.post("/v1/jobs", json={"type": "echo"})
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "broker_unavailable"
    finally:
        infra.broker.start()
    deadline = time.monotonic() + 60
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "readyz did not recover"
        await asyncio.sleep(0.5)
    listed = (await client.get("/v1/jobs")).json()["items"]
    assert [j["id"] for j in listed] == [before["id"]], "a 503 left a job document behind"
    after = await stack.submit("echo", payload={"phase": "after"})
    done = await stack.wait_job(after["id"], timeout=90)
    assert done["status"] == "completed"


async def test_outbox_relay_publishes_stranded_jobs(stack: Stack, store: JobStore, mongo) -> None:
    """A job stored but never published (the API died in between) still runs."""
    await stack.start_api()
    job = Job.from_submission(
        JobSubmission(type="echo", payload={"stranded": True}), default_timeout_s=30
    )
    outbox = Outbox(mongo, stack.db_name)
    await outbox.add(job.id, 1)
    await outbox.add("no-such-job", 1)  # an entry whose job insert never happened
    await store.insert(job)
    await stack.start_worker()
    done = await stack.wait_job(job.id, timeout=30)
    assert done["status"] == "completed"
    assert done["result"] == {"stranded": True}
    for _ in range(100):
        if await outbox.count() == 0:
            break
        await asyncio.sleep(0.1)
    assert await outbox.count() == 0


async def test_higher_priority_runs_first_in_a_backlog(stack: Stack) -> None:
    await stack.start_api()
    low = [
        (await stack.submit("sleep", payload={"seconds": 0.05}, priority=1))["id"]
        for _ in range(15)
    ]
    high = [
        (await stack.submit("sleep", payload={"seconds": 0.05}, priority=10))["id"]
        for _ in range(3)
    ]
    await stack.start_worker(worker_concurrency=1, worker_prefetch=1)
    jobs = {i: await stack.wait_job(i) for i in low + high}
    order = sorted(jobs, key=lambda i: jobs[i]["attempts"][0]["started_at"])
    assert set(order[:3]) == set(high), "priority 10 jobs did not start before the backlog"


async def test_mongodb_outage_mid_job_loses_nothing(stack: Stack, infra: Infra) -> None:
    if infra.database is None:
        pytest.skip("this run's database was not started by scripts/infra.sh; cannot restart it")
    client = await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("sleep", payload={"seconds": 1.5})
    await stack.wait_job(job["id"], {"running"})
    infra.database.stop()
    try:
        deadline = time.monotonic() + 30
        while (await client.get("/readyz")).status_code != 503:
            assert time.monotonic() < deadline, "readyz never reported MongoDB down"
            await asyncio.sleep(0.2)
        resp = await client.get(f"/v1/jobs/{job['id']}")
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "store_unavailable"
        await asyncio.sleep(2)  # the job ends while its outcome cannot be written
    finally:
        infra.database.start()
    done = await stack.wait_job(job["id"], timeout=90)
    assert done["status"] == "completed"
    assert done["attempts"][-1]["outcome"] == "completed"
    assert (await client.get("/readyz")).status_code == 200


async def test_lost_attempts_count_against_the_budget(stack: Stack, amqp) -> None:
    """A job that keeps killing its worker ends failed and parked, not in a crash loop."""
    await stack.start_api()
    victim = await stack.start_worker(worker_id="victim")
    job = await stack.submit("sleep", payload={"seconds": 3}, max_retries=0)
    await stack.wait_job(job["id"], {"running"})
    stack.stop(victim, signal.SIGKILL)
    await stack.start_worker(worker_id="next")
    done = await stack.wait_job(job["id"])
    assert done["status"] == "failed"
    assert [a["outcome"] for a in done["attempts"]] == ["lost"]
    assert "worker lost" in done["error"]
    message = await next_parked(amqp, stack.namespace)
    assert message.headers["x-conveyor-reason"] == "retries exhausted"
