"""POST /v1/jobs/batch: ids in order, all or nothing."""

from __future__ import annotations

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_batch_returns_ids_in_order_and_every_job_runs(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker(worker_concurrency=8)
    jobs = [{"type": "echo", "payload": {"i": i}, "priority": 1 + i % 10} for i in range(60)]
    resp = await client.post("/v1/jobs/batch", json={"jobs": jobs})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["count"] == 60
    assert len(set(body["ids"])) == 60
    for i, job_id in enumerate(body["ids"]):
        done = await stack.wait_job(job_id)
        assert done["status"] == "completed"
        assert done["result"] == {"i": i}
        assert done["priority"] == 1 + i % 10


async def test_one_bad_job_rejects_the_whole_batch(stack: Stack) -> None:
    client = await stack.start_api()
    jobs = [{"type": "echo"}, {"type": "echo"}, {"type": "no-such-type"}]
    resp = await client.post("/v1/jobs/batch", json={"jobs": jobs})
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "unknown_job_type"
    assert err["index"] == 2
    invalid = await client.post("/v1/jobs/batch", json={"jobs": [{"type": "echo"}, {"x": 1}]})
    assert invalid.status_code == 422
    stats = (await client.get("/v1/stats")).json()
    assert stats["total"] == 0
    assert stats["queues"]["work"]["messages"] == 0


@pytest.mark.parametrize("count", [0, 1001])
async def test_batch_size_is_bounded(stack: Stack, count: int) -> None:
    client = await stack.start_api()
    resp = await client.post("/v1/jobs/batch", json={"jobs": [{"type": "echo"}] * count})
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "validation_error"


async def test_batch_may_be_larger_than_the_single_job_limit(stack: Stack) -> None:
    client = await stack.start_api()
    jobs = [{"type": "echo", "payload": {"blob": "x" * 1000}} for _ in range(1000)]
    resp = await client.post("/v1/jobs/batch", json={"jobs": jobs})
    assert resp.status_code == 202, resp.text[:300]
    assert resp.json()["count"] == 1000
    stats = (await client.get("/v1/stats")).json()
    assert stats["total"] == 1000
    assert stats["queues"]["work"]["messages"] == 1000
