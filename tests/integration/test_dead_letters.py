"""/v1/dead-letters: list, redrive (also by two operators at once), purge."""

from __future__ import annotations

import asyncio

import pytest
from pymongo import AsyncMongoClient

from conveyor_kernel.broker import queue_stats
from conveyor_kernel.claims import Claims
from conveyor_kernel.mongo import Document
from conveyor_kernel.topology import build_topology
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def _dead(stack: Stack, n: int) -> list[str]:
    ids = [(await stack.submit("fail-absolute", max_retries=0))["id"] for _ in range(n)]
    for job_id in ids:
        assert (await stack.wait_job(job_id))["status"] == "failed"
    return ids


async def test_list_shows_parked_jobs_with_reason(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    ids = await _dead(stack, 3)
    ok = await stack.submit("echo")
    await stack.wait_job(ok["id"])
    page = (await client.get("/v1/dead-letters", params={"limit": 2})).json()
    assert len(page["items"]) == 2
    rest = (await client.get("/v1/dead-letters", params={"cursor": page["next_cursor"]})).json()
    items = page["items"] + rest["items"]
    assert [i["job_id"] for i in items] == list(reversed(ids))
    assert {i["reason"] for i in items} == {"retries exhausted"}
    assert all(i["attempts"] == 1 and "always fails" in i["error"] for i in items)


async def test_redrive_gives_a_fresh_budget(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    [job_id] = await _dead(stack, 1)
    resp = await client.post("/v1/dead-letters/redrive", json={"ids": [job_id, "nope"]})
    assert resp.status_code == 200
    body = resp.json()
    assert body["redriven"] == [job_id]
    assert body["skipped"] == [{"job_id": "nope", "reason": "no such job"}]
    for _ in range(100):
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] == "failed" and len(job["attempts"]) == 2:
            break
        await asyncio.sleep(0.1)
    assert len(job["attempts"]) == 2, "max_retries=0 again allows exactly one more attempt"
    assert job["status"] == "failed"


async def test_two_operators_redriving_at_once_neither_duplicate_nor_lose(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    ids = await _dead(stack, 4)
    a, b = await asyncio.gather(
        client.post("/v1/dead-letters/redrive", json={"ids": ids}),
        client.post("/v1/dead-letters/redrive", json={"all": True}),
    )
    redriven = a.json()["redriven"] + b.json()["redriven"]
    assert sorted(redriven) == sorted(ids), (a.json(), b.json())
    for job_id in ids:
        for _ in range(100):
            job = (await client.get(f"/v1/jobs/{job_id}")).json()
            if job["status"] == "failed" and len(job["attempts"]) >= 2:
                break
            await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    for job_id in ids:
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        assert len(job["attempts"]) == 2, job


async def test_purge_needs_confirmation_then_empties_everything(stack: Stack, amqp) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    await _dead(stack, 2)
    refused = await client.delete("/v1/dead-letters")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "confirmation_required"
    parking = build_topology(stack.namespace).parking_lot_queue
    channel = await amqp.channel()
    for _ in range(50):
        if (await queue_stats(channel, parking)).messages == 2:
            break
        await asyncio.sleep(0.1)
    resp = await client.delete("/v1/dead-letters", params={"confirm": "true"})
    assert resp.status_code == 200
    assert resp.json() == {"purged_jobs": 2, "purged_messages": 2}
    assert (await client.get("/v1/dead-letters")).json()["items"] == []
    assert (await queue_stats(channel, parking)).messages == 0


async def test_redrive_body_is_validated(stack: Stack) -> None:
    client = await stack.start_api()
    for body in ({}, {"ids": ["a"], "all": True}, {"all": False}):
        assert (await client.post("/v1/dead-letters/redrive", json=body)).status_code == 422


async def test_a_claim_is_released_only_by_its_owner(
    mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    claims = Claims(mongo, f"conveyor_{namespace}")
    await claims.ensure_indexes()
    assert await claims.claim("redrive:j1:3", "op-a")
    assert not await claims.claim("redrive:j1:3", "op-b")
    await claims.release("redrive:j1:3", "op-b")  # not op-b's to release
    assert not await claims.claim("redrive:j1:3", "op-b")
    await claims.release("redrive:j1:3", "op-a")  # op-a's redrive failed: give it back
    assert await claims.claim("redrive:j1:3", "op-b")
