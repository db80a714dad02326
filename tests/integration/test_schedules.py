"""Cron schedules against the real stack: the API, two racing schedulers,
a disabled schedule, and catch-up after downtime."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from conveyor_kernel.model import utcnow
from conveyor_kernel.mongo import Document
from tests.stack import Stack

pytestmark = pytest.mark.integration

FAST = {"scheduler_interval_s": 0.2}


async def create(stack: Stack, **body: Any) -> dict[str, Any]:
    body = {"name": "t", "cron": "* * * * *", "job": {"type": "echo"}} | body
    resp = await stack.client.post("/v1/schedules", json=body)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


async def jobs_of(stack: Stack, schedule_id: str) -> list[dict[str, Any]]:
    resp = await stack.client.get("/v1/jobs", params={"schedule_id": schedule_id})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def due_in_the_past(
    mongo: AsyncMongoClient[Document], namespace: str, schedule_id: str, ago: timedelta
) -> None:
    """As if nothing had run since ``ago``: the schedule's next fire time is then."""
    fire = (utcnow() - ago).replace(second=0, microsecond=0)
    await mongo[f"conveyor_{namespace}"]["schedules"].update_one(
        {"_id": schedule_id}, {"$set": {"next_run_at": fire}}
    )


async def settle(stack: Stack, schedule_id: str, seconds: float = 3) -> dict[str, Any]:
    """Let the schedulers run a few rounds; the schedule afterwards."""
    await asyncio.sleep(seconds)
    resp = await stack.client.get(f"/v1/schedules/{schedule_id}")
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json()
    return body


async def test_schedule_api_validates_and_manages(stack: Stack) -> None:
    await stack.start_api(**FAST)
    bad = await stack.client.post(
        "/v1/schedules", json={"name": "x", "cron": "61 * * * *", "job": {"type": "echo"}}
    )
    assert bad.status_code == 422
    assert "cron" in bad.text
    unknown = await stack.client.post(
        "/v1/schedules", json={"name": "x", "cron": "@daily", "job": {"type": "nope"}}
    )
    assert unknown.status_code == 422
    created = await create(stack, cron="0 3 * * *", timezone="Europe/Berlin")
    assert created["next_run_at"] is not None
    assert created["last_run"] is None
    listed = (await stack.client.get("/v1/schedules")).json()
    assert [s["id"] for s in listed] == [created["id"]]
    patched = await stack.client.patch(f"/v1/schedules/{created['id']}", json={"enabled": False})
    assert patched.status_code == 200
    assert patched.json()["next_run_at"] is None
    tomorrow = (utcnow() + timedelta(days=1)).isoformat()
    for when in ({"delay_s": 5}, {"run_at": tomorrow}):
        refused = await stack.client.patch(
            f"/v1/schedules/{created['id']}", json={"job": {"type": "echo", **when}}
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "validation_error"
        assert "fire time" in refused.text
    assert (await stack.client.delete(f"/v1/schedules/{created['id']}")).status_code == 204
    assert (await stack.client.get(f"/v1/schedules/{created['id']}")).status_code == 404


@pytest.mark.timeout(90)
async def test_two_racing_schedulers_make_one_job_per_fire_time(
    stack: Stack, mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    first = await stack.start_api(**FAST)
    await stack.start_api(**FAST)  # a second replica, same store and broker
    await stack.start_worker()
    sched = await create(stack)
    await due_in_the_past(mongo, namespace, sched["id"], timedelta(seconds=20))
    after = await settle(stack, sched["id"])
    jobs = await jobs_of(stack, sched["id"])
    assert len(jobs) == 1, jobs
    assert after["last_run"]["job_id"] == jobs[0]["id"]
    assert after["next_run_at"] > after["last_run"]["fire_time"]
    assert (await first.get(f"/v1/jobs/{jobs[0]['id']}")).json()["schedule_id"] == sched["id"]
    done = await stack.wait_job(jobs[0]["id"])
    assert done["status"] == "completed"
    fired = sum(p.log().count('"schedule fired"') for p in stack.procs if p.name == "api")
    assert fired == 1


@pytest.mark.timeout(90)
async def test_disabled_schedules_fire_nothing_and_downtime_follows_catch_up(
    stack: Stack, mongo: AsyncMongoClient[Document], namespace: str
) -> None:
    await stack.start_api(**FAST)
    # Hourly at a minute 30 min away from now: no fire time is ever within the 60 s
    # grace while the test runs, so every due one was missed.
    hourly = f"{(utcnow().minute + 30) % 60} * * * *"
    off = await create(stack, enabled=False)
    skip = await create(stack, cron=hourly, catch_up="none")
    latest = await create(stack, cron=hourly, catch_up="latest")
    # Nothing ran for two hours: fire times of each were missed.
    for s in (off, skip, latest):
        await due_in_the_past(mongo, namespace, s["id"], timedelta(hours=2))
    await mongo[f"conveyor_{namespace}"]["schedules"].update_one(
        {"_id": off["id"]}, {"$set": {"enabled": False}}
    )
    deadline = time.monotonic() + 10
    while (await settle(stack, latest["id"], 0.5))["last_run"] is None:
        assert time.monotonic() < deadline, "catch-up latest never fired"
    await asyncio.sleep(1)
    assert await jobs_of(stack, off["id"]) == []
    assert await jobs_of(stack, skip["id"]) == []
    skipped = await settle(stack, skip["id"], 0)
    assert skipped["next_run_at"] > utcnow().isoformat()  # moved past the missed ones
    caught = await jobs_of(stack, latest["id"])
    assert len(caught) == 1
    last = (await settle(stack, latest["id"], 0))["last_run"]
    assert last["job_id"] == caught[0]["id"]
    assert last["fire_time"] < utcnow().isoformat()
