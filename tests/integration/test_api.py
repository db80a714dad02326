"""The REST contract, end to end: HTTP -> MongoDB -> RabbitMQ -> worker -> MongoDB."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conveyor_kernel.outbox import Outbox
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_echo_job_runs_to_completion(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("echo", payload={"hello": "world"}, priority=7)
    assert job["status"] == "queued"
    assert job["priority"] == 7
    assert job["created_at"]
    done = await stack.wait_job(job["id"])
    assert done["status"] == "completed"
    assert done["result"] == {"hello": "world"}
    assert len(done["attempts"]) == 1
    attempt = done["attempts"][0]
    assert attempt["outcome"] == "completed"
    assert attempt["worker"] == "w1"
    assert attempt["started_at"] <= attempt["finished_at"]
    assert done["finished_at"] is not None


async def test_job_document_is_stored_in_mongodb(stack: Stack, store, mongo) -> None:
    await stack.start_api()
    job = await stack.submit("echo", payload={"n": 1})
    stored = await store.get(job["id"])
    assert stored is not None
    assert stored.status.value == "queued"
    assert stored.payload == {"n": 1}
    # 202 means the broker confirmed the message: its outbox entry is gone
    assert await Outbox(mongo, stack.db_name).count() == 0
    stats = (await stack.client.get("/v1/stats")).json()
    assert stats["queues"]["work"]["messages"] == 1


async def test_unknown_type_is_422_naming_known_types(stack: Stack) -> None:
    client = await stack.start_api()
    resp = await client.post("/v1/jobs", json={"type": "nope"})
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "unknown_job_type"
    assert {
        "echo",
        "sleep",
        "fail",
        "fail-absolute",
        "email",
        "image-process",
        "report-gen",
    } <= set(err["known_types"])


@pytest.mark.parametrize(
    "body",
    [
        {"payload": {}},
        {"type": "echo", "priority": 11},
        {"type": "echo", "priority": 0},
        {"type": "echo", "payload": [1, 2]},
        {"type": "echo", "max_retries": -1},
        {"type": "echo", "timeout_s": 0},
        {"type": "echo", "surprise": True},
    ],
)
async def test_malformed_body_is_422(stack: Stack, body: dict[str, object]) -> None:
    client = await stack.start_api()
    resp = await client.post("/v1/jobs", json=body)
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["code"] == "validation_error"
    assert err["details"]


async def test_not_json_is_422(stack: Stack) -> None:
    client = await stack.start_api()
    resp = await client.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "validation_error"


async def test_oversized_payload_is_413(stack: Stack, store) -> None:
    client = await stack.start_api()
    big = {"type": "echo", "payload": {"blob": "x" * (256 * 1024)}}
    resp = await client.post("/v1/jobs", json=big)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"

    # chunked upload without Content-Length is limited too
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type":"echo","payload":{"b":"'
        for _ in range(30):
            yield b"y" * 10_000
        yield b'"}}'

    resp = await client.post(
        "/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert (await store.stats(10)).total == 0
    ok = await client.post("/v1/jobs", json={"type": "echo", "payload": {"blob": "x" * 200_000}})
    assert ok.status_code == 202


async def test_unknown_job_is_404_with_json_body(stack: Stack) -> None:
    client = await stack.start_api()
    resp = await client.get("/v1/jobs/does-not-exist")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "job_not_found"
    assert (await client.delete("/v1/jobs/does-not-exist")).status_code == 404
    assert (await client.post("/v1/jobs/does-not-exist/retry")).status_code == 404


async def test_list_is_newest_first_with_cursor_and_filters(stack: Stack) -> None:
    client = await stack.start_api()
    ids = [(await stack.submit("echo", payload={"i": i}))["id"] for i in range(7)]
    other = (await stack.submit("sleep", payload={"seconds": 0}))["id"]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"type": "echo", "limit": 3} | ({"cursor": cursor} if cursor else {})
        resp = await client.get("/v1/jobs", params=params)
        assert resp.status_code == 200
        page = resp.json()
        seen += [j["id"] for j in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3
    queued = (await client.get("/v1/jobs", params={"status": "queued", "limit": 100})).json()
    assert {j["id"] for j in queued["items"]} == {*ids, other}
    assert (await client.get("/v1/jobs", params={"status": "bogus"})).status_code == 422
    bad = await client.get("/v1/jobs", params={"cursor": "!!!"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_cursor"


async def test_retry_clones_a_finished_job(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("fail-absolute", max_retries=0)
    failed = await stack.wait_job(job["id"])
    assert failed["status"] == "failed"
    resp = await client.post(f"/v1/jobs/{job['id']}/retry")
    assert resp.status_code == 201
    clone = resp.json()
    assert clone["id"] != job["id"]
    assert clone["retry_of"] == job["id"]
    assert clone["type"] == "fail-absolute"
    assert clone["attempts"] == []
    original = (await client.get(f"/v1/jobs/{job['id']}")).json()
    assert original == failed
    assert (await stack.wait_job(clone["id"]))["status"] == "failed"


async def test_retry_of_unfinished_job_is_409(stack: Stack) -> None:
    client = await stack.start_api()
    job = await stack.submit("echo")  # no worker: stays queued
    resp = await client.post(f"/v1/jobs/{job['id']}/retry")
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "job_not_finished"


async def test_delete_finished_204_unfinished_409(stack: Stack) -> None:
    client = await stack.start_api()
    queued = await stack.submit("echo")
    resp = await client.delete(f"/v1/jobs/{queued['id']}")
    assert resp.status_code == 409
    await stack.start_worker()
    await stack.wait_job(queued["id"])
    assert (await client.delete(f"/v1/jobs/{queued['id']}")).status_code == 204
    assert (await client.get(f"/v1/jobs/{queued['id']}")).status_code == 404


async def test_running_job_cannot_be_deleted(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("sleep", payload={"seconds": 3})
    await stack.wait_job(job["id"], {"running"})
    assert (await client.delete(f"/v1/jobs/{job['id']}")).status_code == 409
    assert (await stack.wait_job(job["id"]))["status"] == "completed"


async def test_stats_counts_jobs_and_reads_the_queue(stack: Stack) -> None:
    client = await stack.start_api()
    for _ in range(3):
        await stack.submit("echo")
    await stack.submit("sleep", payload={"seconds": 0})
    stats = (await client.get("/v1/stats")).json()
    assert stats["total"] == 4
    assert stats["by_status"]["queued"] == 4
    assert stats["by_status"]["completed"] == 0
    assert stats["by_type"] == {"echo": 3, "sleep": 1}
    assert stats["counts_stale"] is False
    assert stats["counts_error"] is None
    assert 0 <= stats["counts_age_s"] < 60
    assert stats["counted_at"].endswith("Z") or "+00:00" in stats["counted_at"]
    assert stats["queues"]["work"]["messages"] == 4
    assert stats["queues"]["work"]["consumers"] == 0
    assert stats["queues"]["work"]["name"].startswith(stack.namespace)
    await stack.start_worker()
    await stack.start_worker()
    jobs = (await client.get("/v1/jobs")).json()["items"]
    for j in jobs:
        await stack.wait_job(j["id"])
    # The workers' count changes reach the API within CONVEYOR_COUNTS_FLUSH_S.
    stats = await stack.stats_until(lambda s: s["by_status"]["completed"] == 4)
    assert stats["by_status"]["queued"] == 0
    assert stats["total"] == 4
    assert stats["queues"]["work"]["messages"] == 0
    assert stats["queues"]["work"]["consumers"] == 2


async def test_health_readiness_and_metrics(stack: Stack) -> None:
    client = await stack.start_api()
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"rabbitmq": "ok", "mongodb": "ok"}
    await stack.submit("echo")
    text = (await client.get("/metrics")).text
    assert 'conveyor_api_jobs_submitted_total{priority="5",type="echo"} 1.0' in text
    assert 'route="/v1/jobs"' in text
    types = (await client.get("/v1/job-types")).json()
    assert "echo" in {t["name"] for t in types}
    openapi = (await client.get("/openapi.json")).json()
    assert "/v1/jobs/{job_id}/retry" in openapi["paths"]
