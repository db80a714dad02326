"""``ctx.progress``: seen through the API and the event stream while the job
runs, written at most once a second, the last value kept with the outcome."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from httpx_sse import aconnect_sse
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.mark.timeout(90)
async def test_progress_is_visible_while_running_and_kept_after(stack: Stack) -> None:
    client = await stack.start_api()
    worker = await stack.start_worker()
    streamed: list[dict[str, object]] = []

    async def follow(job_id: str) -> None:
        async with aconnect_sse(
            client, "GET", "/v1/events/stream", params={"job_id": job_id}
        ) as source:
            async for sse in source.aiter_sse():
                if sse.event == "job.progress":
                    streamed.append(sse.json())
                if sse.event == "job.completed":
                    return

    job = await stack.submit("sleep", payload={"seconds": 4})
    follower = asyncio.create_task(follow(job["id"]))
    seen: list[float] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = (await client.get(f"/v1/jobs/{job['id']}")).json()
        if current["status"] == "completed":
            break
        if current["progress"] is not None:
            seen.append(current["progress"]["fraction"])
        await asyncio.sleep(0.1)
    await asyncio.wait_for(follower, 15)
    done = await stack.wait_job(job["id"])

    running = sorted(set(seen))
    assert len(running) >= 2, seen  # it moved while running, as seen through the API
    assert all(0 < f < 1 for f in running)
    assert seen == sorted(seen)
    # Throttled: about one write a second over a 4 s job, not one per report (8).
    assert 2 <= len(running) <= 5
    assert done["progress"]["fraction"] == 1.0
    assert done["progress"]["message"] == "slept step 8/8"
    fractions = [e["progress"]["fraction"] for e in streamed]  # type: ignore[index]
    assert len(fractions) >= 2
    assert fractions == sorted(fractions)
    assert set(running) <= set(fractions)
    # The worker counts every report and the writes it let through.
    async with httpx.AsyncClient() as plain:
        exposition = (await plain.get(f"http://127.0.0.1:{worker.metrics_port}/metrics")).text
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.labels.get("type") == "sleep"
    }
    assert samples["conveyor_job_progress_reports_total"] == 8
    assert 2 <= samples["conveyor_job_progress_writes_total"] <= 5


@pytest.mark.timeout(60)
async def test_jobs_that_never_report_have_no_progress(stack: Stack) -> None:
    await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("echo", payload={"x": 1})
    done = await stack.wait_job(job["id"])
    assert done["status"] == "completed"
    assert done["progress"] is None
