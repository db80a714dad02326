"""Scheduled jobs: run_at / delay_s wait in broker delay tiers, never in a worker."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest

from conveyor_kernel.broker import queue_stats
from conveyor_kernel.topology import build_topology, delay_queue_name
from tests.infra import Infra
from tests.stack import Stack

pytestmark = pytest.mark.integration


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_delayed_job_is_scheduled_then_runs_on_time(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("echo", delay_s=3.5)
    assert job["status"] == "scheduled"
    due = ts(job["next_attempt_at"])
    assert 3.4 <= (due - ts(job["created_at"])).total_seconds() <= 3.6
    done = await stack.wait_job(job["id"], timeout=30)
    started = ts(done["attempts"][0]["started_at"])
    lateness = (started - due).total_seconds()
    assert -0.01 <= lateness <= 1.0, f"started {lateness:+.3f}s from its due time"


async def test_far_future_job_waits_in_the_longest_tier(stack: Stack, amqp) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    run_at = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    job = await stack.submit("echo", run_at=run_at)
    assert job["status"] == "scheduled"
    channel = await amqp.channel()
    hour = await queue_stats(channel, delay_queue_name(stack.namespace, 3600))
    assert hour.messages == 1
    work = await queue_stats(channel, build_topology(stack.namespace).work_queue)
    assert work.messages == 0
    assert (await client.get(f"/v1/jobs/{job['id']}")).json()["status"] == "scheduled"


async def test_schedule_validation(stack: Stack) -> None:
    client = await stack.start_api()
    both = await client.post(
        "/v1/jobs", json={"type": "echo", "delay_s": 1, "run_at": "2030-01-01T00:00:00Z"}
    )
    assert both.status_code == 422
    naive = await client.post("/v1/jobs", json={"type": "echo", "run_at": "2030-01-01T00:00:00"})
    assert naive.status_code == 422
    too_far = await client.post("/v1/jobs", json={"type": "echo", "delay_s": 10**9})
    assert too_far.status_code == 422
    past = await stack.submit("echo", run_at="2001-01-01T00:00:00+02:00")
    assert past["status"] == "queued"


async def test_schedule_survives_api_worker_and_broker_restarts(stack: Stack, infra: Infra) -> None:
    await stack.start_api()
    worker = await stack.start_worker()
    job = await stack.submit("echo", payload={"survived": True}, delay_s=6)
    assert stack.stop(worker, signal.SIGKILL) == -signal.SIGKILL
    api = stack.procs[0]
    # uvicorn re-raises SIGTERM after its graceful shutdown
    assert stack.stop(api, signal.SIGTERM) in (0, -signal.SIGTERM)
    assert "api stopped" in api.log()
    infra.broker.stop()
    infra.broker.start()
    await stack.start_api()
    await stack.start_worker()
    done = await stack.wait_job(job["id"], timeout=60)
    assert done["status"] == "completed"
    assert done["result"] == {"survived": True}
    started = ts(done["attempts"][0]["started_at"])
    assert started >= ts(job["next_attempt_at"])
