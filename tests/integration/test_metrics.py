"""Every process's /metrics moves by exactly the work done; promtool accepts each exposition."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer

from conveyor_kernel.notifications import new_secret
from tests.receivers import Receiver
from tests.stack import ADMIN, Proc, Stack

pytestmark = pytest.mark.integration

SECRET = new_secret()


def value(exposition: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` (0 if absent, as for a counter never incremented)."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=10, headers=ADMIN) as client:
        resp = await client.get(url)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=")
    return resp.text


def ops_url(proc: Proc, path: str = "/metrics") -> str:
    return f"http://127.0.0.1:{proc.metrics_port}{path}"


def promtool_accepts(exposition: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/infra.sh up installs Debian's prometheus"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition.encode(), capture_output=True
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


async def test_metrics_count_exactly_the_jobs_run(stack: Stack, httpserver: HTTPServer) -> None:
    receiver = Receiver(httpserver)
    api = await stack.start_api(webhook_secret=SECRET, queue_metrics_interval_s="0.5")
    worker = await stack.start_worker()
    notifier = await stack.start_notifier(
        webhook_secret=SECRET, notify_allowed_networks=json.dumps(["127.0.0.1/32"])
    )
    before = {
        "api": (await api.get("/metrics")).text,
        "worker": await scrape(ops_url(worker)),
        "notifier": await scrape(ops_url(notifier)),
    }
    hooked = await stack.submit("echo", priority=7, notify={"webhook": {"url": receiver.url}})
    jobs = [hooked, *[await stack.submit("echo", priority=7) for _ in range(2)]]
    jobs.append(await stack.submit("fail", max_retries=1, backoff={"base_s": 0.1}))
    for job in jobs:
        await stack.wait_job(job["id"])
    await stack.deliveries(hooked["id"])
    after_api = (await api.get("/metrics")).text
    after_worker = await scrape(ops_url(worker))
    deadline = time.monotonic() + 30
    while True:  # the hooked job's event: the others have no consumer, so are not sent
        after_notifier = await scrape(ops_url(notifier))
        if value(after_notifier, "conveyor_notifier_events_total", event_type="job.completed") >= 1:
            break
        assert time.monotonic() < deadline, after_notifier
        await asyncio.sleep(0.2)

    def delta(proc: str, text: str, name: str, **labels: str) -> float:
        return value(text, name, **labels) - value(before[proc], name, **labels)

    submitted = "conveyor_api_jobs_submitted_total"
    assert delta("api", after_api, submitted, type="echo", priority="7") == 3
    assert delta("api", after_api, submitted, type="fail", priority="5") == 1
    requests = "conveyor_api_requests_total"
    assert delta("api", after_api, requests, route="/v1/jobs", method="POST", status="202") == 4

    processed = "conveyor_jobs_processed_total"
    assert delta("worker", after_worker, processed, type="echo", outcome="completed") == 3
    assert delta("worker", after_worker, processed, type="fail", outcome="retrying") == 1
    assert delta("worker", after_worker, processed, type="fail", outcome="completed") == 1
    assert delta("worker", after_worker, "conveyor_job_attempts_total", type="echo") == 3
    assert delta("worker", after_worker, "conveyor_job_attempts_total", type="fail") == 2
    assert delta("worker", after_worker, "conveyor_job_retries_total", type="fail") == 1
    errors = "conveyor_job_errors_total"
    assert delta("worker", after_worker, errors, type="fail", error_type="RetryableError") == 1
    assert delta("worker", after_worker, "conveyor_job_duration_seconds_count", type="echo") == 3
    assert delta("worker", after_worker, "conveyor_job_queue_wait_seconds_count", type="fail") == 2
    assert value(after_worker, "conveyor_worker_jobs_in_flight") == 0
    assert value(after_worker, "conveyor_build_info", service="worker") == 1

    deliveries = "conveyor_notifier_deliveries_total"
    assert (
        delta("notifier", after_notifier, deliveries, channel="webhook", outcome="delivered") == 1
    )
    events = "conveyor_notifier_events_total"
    # The event gate: only the job whose notify wants job.completed publishes an event.
    assert delta("notifier", after_notifier, events, event_type="job.completed") == 1
    assert delta("notifier", after_notifier, events, event_type="job.retrying") == 0
    until = "conveyor_notifier_attempts_until_success_count"
    assert delta("notifier", after_notifier, until, channel="webhook") == 1

    work_queue = f"{stack.namespace}.jobs.work"
    deadline = time.monotonic() + 10
    while value(after_api, "conveyor_queue_consumers", queue=work_queue) != 1:
        assert time.monotonic() < deadline, after_api
        await asyncio.sleep(0.2)
        after_api = (await api.get("/metrics")).text
    assert value(after_api, "conveyor_queue_stats_up") == 1
    assert value(after_api, "conveyor_queue_messages", queue=work_queue) == 0

    for exposition in (after_api, after_worker, after_notifier):
        promtool_accepts(exposition)


async def test_worker_and_notifier_health_endpoints(stack: Stack) -> None:
    await stack.start_api()
    worker = await stack.start_worker()
    notifier = await stack.start_notifier()
    async with httpx.AsyncClient(timeout=10) as client:
        for proc in (worker, notifier):
            assert (await client.get(ops_url(proc, "/healthz"))).json() == {"status": "ok"}
            ready = await client.get(ops_url(proc, "/readyz"))
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"rabbitmq": True, "mongodb": True}
            assert (await client.get(ops_url(proc, "/nope"))).status_code == 404


async def test_job_log_lines_carry_job_type_attempt_worker(stack: Stack) -> None:
    await stack.start_api()
    worker = await stack.start_worker(worker_id="w-logs")
    job = await stack.submit("fail", max_retries=1, backoff={"base_s": 0.1})
    await stack.wait_job(job["id"])
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    about_job = [entry for entry in lines if entry.get("job_id") == job["id"]]
    assert len(about_job) >= 4  # started/finished for two attempts, at least
    for entry in about_job:
        assert entry["type"] == "fail", entry
        assert entry["worker"] == "w-logs", entry
        assert entry["attempt"] in (1, 2), entry
        assert {"timestamp", "level", "event"} <= set(entry)
