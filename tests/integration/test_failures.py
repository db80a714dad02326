"""Failure paths: retries, permanent errors, timeouts and poison messages."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from conveyor_kernel.broker import queue_stats
from conveyor_kernel.topology import WORK_ROUTING_KEY, build_topology
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_fail_succeeds_on_its_last_retry(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("fail", max_retries=3)
    done = await stack.wait_job(job["id"])
    assert done["status"] == "completed"
    outcomes = [a["outcome"] for a in done["attempts"]]
    assert outcomes == ["failed", "failed", "failed", "completed"]
    assert [a["number"] for a in done["attempts"]] == [1, 2, 3, 4]
    assert "planned failure on attempt 1" in done["attempts"][0]["error"]
    assert done["attempts"][0]["error_type"] == "RetryableError"
    assert "Traceback" in done["attempts"][0]["traceback"]
    assert "builtin.py" in done["attempts"][0]["traceback"]
    assert done["attempts"][-1]["traceback"] is None
    assert done["result"] == {"succeeded_on_attempt": 4}
    starts = [a["started_at"] for a in done["attempts"]]
    assert starts == sorted(starts)


async def test_fail_absolute_exhausts_retries_then_fails(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("fail-absolute", max_retries=2)
    done = await stack.wait_job(job["id"])
    assert done["status"] == "failed"
    assert [a["outcome"] for a in done["attempts"]] == ["failed"] * 3
    assert "fail-absolute always fails" in done["error"]
    assert done["result"] is None


async def test_permanent_error_is_not_retried(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("sleep", payload={"seconds": "soon"}, max_retries=5)
    done = await stack.wait_job(job["id"])
    assert done["status"] == "failed"
    assert len(done["attempts"]) == 1
    assert "PermanentError" in done["error"]


async def test_attempt_over_timeout_fails_with_timeout(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("sleep", payload={"seconds": 30}, timeout_s=0.5, max_retries=1)
    done = await stack.wait_job(job["id"])
    assert done["status"] == "failed"
    assert [a["outcome"] for a in done["attempts"]] == ["timeout", "timeout"]
    assert done["attempts"][0]["error_type"] == "timeout"
    assert done["error"].startswith("timeout")
    assert all(a["duration_s"] < 5 for a in done["attempts"])


async def test_default_timeout_comes_from_settings(stack: Stack) -> None:
    await stack.start_api(default_job_timeout_s=42)
    job = await stack.submit("echo")
    assert job["timeout_s"] == 42


@pytest.mark.parametrize(
    "body",
    [b"not json at all", b'{"v": 99, "job_id": "x"}', b'{"v": 1, "job_id": "x", "type": "echo"}'],
)
async def test_poison_message_goes_to_the_parking_lot(
    stack: Stack, amqp: aio_pika.abc.AbstractConnection, body: bytes
) -> None:
    await stack.start_api()
    worker = await stack.start_worker()
    topo = build_topology(stack.namespace)
    channel = await amqp.channel()
    exchange = await channel.get_exchange(topo.jobs_exchange)
    await exchange.publish(aio_pika.Message(body, message_id="poison-1"), WORK_ROUTING_KEY)
    for _ in range(100):
        parked = await queue_stats(channel, topo.parking_lot_queue)
        if parked.messages:
            break
        await asyncio.sleep(0.1)
    assert parked.messages == 1
    assert (await queue_stats(channel, topo.work_queue)).messages == 0
    assert "poison message" in worker.log()
    assert worker.alive()
    message = await (await channel.get_queue(topo.parking_lot_queue)).get(no_ack=True)
    assert message is not None
    assert message.body == body
    assert str(message.headers["x-conveyor-reason"]).startswith("poison: ")
    # the worker still processes good jobs afterwards
    job = await stack.submit("echo")
    assert (await stack.wait_job(job["id"]))["status"] == "completed"
