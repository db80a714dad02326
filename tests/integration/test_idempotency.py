"""Idempotency-Key on submit: replays return the original, other bodies conflict."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pymongo import AsyncMongoClient

from conveyor_kernel.idempotency import Claimed, Conflict, IdempotencyKeys, Replay, fingerprint
from conveyor_kernel.model import Job, JobSubmission, new_job_id
from conveyor_kernel.mongo import Document
from conveyor_kernel.store import JobStore
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_same_key_same_body_returns_the_original_job(stack: Stack) -> None:
    client = await stack.start_api()
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    body = {"type": "echo", "payload": {"order": 17}, "priority": 3}
    first = await client.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == 202
    again = await client.post("/v1/jobs", json=body, headers=key)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    # the same body spelled differently (defaults explicit, other key order) is the same request
    spelled = {"priority": 3, "payload": {"order": 17}, "type": "echo", "max_retries": 3}
    assert (await client.post("/v1/jobs", json=spelled, headers=key)).json()["id"] == (
        first.json()["id"]
    )
    stats = (await client.get("/v1/stats")).json()
    assert stats["total"] == 1
    assert stats["queues"]["work"]["messages"] == 1


async def test_same_key_other_body_is_409(stack: Stack) -> None:
    client = await stack.start_api()
    key = {"Idempotency-Key": "k-1"}
    assert (await client.post("/v1/jobs", json={"type": "echo"}, headers=key)).status_code == 202
    other = await client.post("/v1/jobs", json={"type": "echo", "payload": {"x": 1}}, headers=key)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_concurrent_requests_with_one_key_create_one_job(stack: Stack) -> None:
    client = await stack.start_api()
    key = {"Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(client.post("/v1/jobs", json={"type": "echo"}, headers=key) for _ in range(8))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(202) == 1, codes
    assert set(codes) <= {200, 202, 409}
    assert (await client.get("/v1/stats")).json()["total"] == 1


async def test_keys_expire_after_the_window(stack: Stack) -> None:
    client = await stack.start_api(idempotency_ttl_s=1)
    key = {"Idempotency-Key": "short-lived"}
    first = await client.post("/v1/jobs", json={"type": "echo"}, headers=key)
    await asyncio.sleep(1.2)
    later = await client.post("/v1/jobs", json={"type": "echo"}, headers=key)
    assert later.status_code == 202
    assert later.json()["id"] != first.json()["id"]


async def test_batch_accepts_an_idempotency_key(stack: Stack) -> None:
    client = await stack.start_api()
    key = {"Idempotency-Key": "batch-1"}
    body = {"jobs": [{"type": "echo", "payload": {"i": i}} for i in range(5)]}
    first = await client.post("/v1/jobs/batch", json=body, headers=key)
    again = await client.post("/v1/jobs/batch", json=body, headers=key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["ids"] == first.json()["ids"]


async def test_failed_request_releases_its_key(stack: Stack) -> None:
    client = await stack.start_api()
    key = {"Idempotency-Key": "retry-me"}
    bad = await client.post("/v1/jobs", json={"type": "no-such"}, headers=key)
    assert bad.status_code == 422
    assert (await client.post("/v1/jobs", json={"type": "echo"}, headers=key)).status_code == 202


async def test_an_unfinished_claim_holds_its_key_only_for_the_lease(
    mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    keys = IdempotencyKeys(mongo, f"conveyor_{namespace}", ttl_s=3600, lease_s=0.5)
    await keys.ensure_indexes()
    first = await keys.claim("crashed", "fp", ["job-1"])  # its request then dies
    assert first == Claimed(["job-1"])
    assert await keys.claim("crashed", "fp", ["job-2"]) == Conflict("in_progress")
    await asyncio.sleep(0.7)
    # Two retries after the lease: one takes it over, with the dead request's ids.
    taken = [await keys.claim("crashed", "fp", ["job-3"]) for _ in range(2)]
    assert taken == [Claimed(["job-1"], taken_over=True), Conflict("in_progress")]
    await keys.complete("crashed", ["job-1"])
    await asyncio.sleep(0.7)  # a finished claim is not subject to the lease
    assert await keys.claim("crashed", "fp", ["job-4"]) == Replay(job_ids=["job-1"])


async def test_a_taken_over_key_submits_only_what_its_dead_request_did_not(
    stack: Stack, mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    """Found by the chaos run: an API killed between storing the jobs and
    completing the key made the retry submit them a second time."""
    client = await stack.start_api()
    db = f"conveyor_{namespace}"
    dead = IdempotencyKeys(mongo, db, ttl_s=3600, lease_s=0)  # its lease is over at once
    store = JobStore(mongo, db)
    body = {"type": "echo", "payload": {"n": 1}}
    sub = JobSubmission.model_validate(body)
    # Dead request 1 stored its job, then died before completing the key.
    stored = Job.from_submission(sub, default_timeout_s=30, job_id=new_job_id())
    await dead.claim("died-after-storing", fingerprint(sub.model_dump(mode="json")), [stored.id])
    await store.insert_many([stored])
    # Dead request 2 died before storing anything.
    planned = new_job_id()
    await dead.claim("died-before-storing", fingerprint(sub.model_dump(mode="json")), [planned])

    again = await client.post(
        "/v1/jobs", json=body, headers={"Idempotency-Key": "died-after-storing"}
    )
    assert again.status_code == 202, again.text
    assert again.json()["id"] == stored.id
    fresh = await client.post(
        "/v1/jobs", json=body, headers={"Idempotency-Key": "died-before-storing"}
    )
    assert fresh.status_code == 202, fresh.text
    assert fresh.json()["id"] == planned
    assert await mongo[db]["jobs"].count_documents({}) == 2
    replay = await client.post(
        "/v1/jobs", json=body, headers={"Idempotency-Key": "died-after-storing"}
    )
    assert replay.status_code == 200
    assert replay.json()["id"] == stored.id
