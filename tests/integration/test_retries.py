"""Retries with backoff through broker delay tiers, and the parking lot."""

from __future__ import annotations

from datetime import datetime

import pytest

from conveyor_kernel.broker import queue_stats
from conveyor_kernel.topology import build_topology
from tests.stack import Stack, next_parked

pytestmark = pytest.mark.integration

NO_JITTER = {"base_s": 1, "factor": 2, "max_s": 3600, "jitter": False}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_retry_timeline_follows_the_backoff(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("fail", max_retries=3, backoff=NO_JITTER)
    waiting = await stack.wait_job(job["id"], {"retrying"})
    assert waiting["next_attempt_at"] is not None
    assert waiting["attempts"][0]["outcome"] == "failed"
    done = await stack.wait_job(job["id"], timeout=60)
    assert done["status"] == "completed"
    attempts = done["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "failed", "completed"]
    for i, nominal in enumerate([1, 2, 4]):
        gap = (ts(attempts[i + 1]["started_at"]) - ts(attempts[i]["finished_at"])).total_seconds()
        assert gap >= nominal - 0.01, f"retry {i + 1} came after {gap:.3f}s < {nominal}s"
        assert gap < nominal + 3, f"retry {i + 1} waited {gap:.3f}s, far over {nominal}s"
    assert done["next_attempt_at"] is None


async def test_long_delay_passes_through_a_delay_tier(stack: Stack, amqp) -> None:
    await stack.start_api()
    await stack.start_worker()
    backoff = {"base_s": 6, "factor": 1, "max_s": 6, "jitter": False}
    job = await stack.submit("fail", max_retries=1, backoff=backoff)
    await stack.wait_job(job["id"], {"retrying"})
    topo = build_topology(stack.namespace)
    channel = await amqp.channel()
    tier = await queue_stats(channel, f"{topo.delay_exchange}.5s")
    assert tier.messages == 1, "the waiting retry should sit in the 5 s tier"
    done = await stack.wait_job(job["id"], timeout=30)
    first, second = done["attempts"]
    assert (ts(second["started_at"]) - ts(first["finished_at"])).total_seconds() >= 5.99


async def test_exhausted_job_is_parked_with_the_reason(stack: Stack, amqp) -> None:
    await stack.start_api()
    await stack.start_worker()
    backoff = {"base_s": 0.2, "factor": 1, "max_s": 1, "jitter": False}
    job = await stack.submit("fail-absolute", max_retries=2, backoff=backoff)
    done = await stack.wait_job(job["id"])
    assert done["status"] == "failed"
    assert len(done["attempts"]) == 3
    message = await next_parked(amqp, stack.namespace)
    headers = message.headers
    assert headers["x-conveyor-reason"] == "retries exhausted"
    assert headers["x-conveyor-job-id"] == job["id"]
    assert headers["x-conveyor-attempts"] == 3
    assert "fail-absolute always fails" in str(headers["x-conveyor-error"])


async def test_permanent_failure_is_parked_without_retries(stack: Stack, amqp) -> None:
    await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("sleep", payload={"seconds": -1}, max_retries=4)
    done = await stack.wait_job(job["id"])
    assert len(done["attempts"]) == 1
    message = await next_parked(amqp, stack.namespace)
    assert message.headers["x-conveyor-reason"] == "permanent error"
