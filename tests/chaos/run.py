"""One chaos run: start the stack, submit the mix, inject the faults in order,
wait for every accepted job to end, and reckon."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
from pytest_httpserver import HTTPServer

from conveyor_kernel.mongo import make_client
from conveyor_kernel.notifications import new_secret
from conveyor_kernel.topology import build_topology
from conveyor_kernel.topology import delete as delete_topology
from tests.chaos.load import Submitter
from tests.chaos.mix import plan
from tests.chaos.reckoning import (
    TERMINAL,
    Reckoning,
    listed_dead_letters,
    reckon_jobs,
    reckon_webhooks,
    stored_jobs,
)
from tests.chaos.stack import ChaosStack
from tests.infra import Infra, free_port
from tests.receivers import Receiver
from tests.stack import wait_ready

ADMIN_KEY = "chaos-admin-" + secrets.token_hex(24)


@dataclass(frozen=True)
class Scenario:
    jobs: int = 10_000
    workers: int = 3
    worker_concurrency: int = 16
    spread_s: float = 90.0  # submissions are paced over this long
    client_concurrency: int = 16
    worker_kills: int = 5
    kill_api: bool = True
    restart_broker: bool = True
    restart_store: bool = True
    kill_notifier: bool = True
    deadline_s: float = 900.0
    seed: int = 1
    log_level: str = "WARNING"


Fault = tuple[str, Callable[[], Awaitable[None]]]


def faults(scenario: Scenario, stack: ChaosStack) -> list[Fault]:
    """The faults in the order the run injects them."""

    async def bounce(name: str, pause_s: float) -> None:
        service = stack.services[name]
        service.kill()
        await asyncio.sleep(pause_s)
        service.start()

    out: list[Fault] = []
    for i in range(scenario.worker_kills):
        name = f"worker-{i % scenario.workers}"
        out.append((f"SIGKILL {name}", lambda n=name: bounce(n, 0.5)))  # type: ignore[misc]
    if scenario.kill_api:
        out.append(("SIGKILL api", lambda: bounce("api", 1.0)))
    if scenario.restart_broker:
        out.append(("restart RabbitMQ", stack.restart_broker))
    if scenario.restart_store:
        out.append(("restart the MongoDB-wire server", stack.restart_store))
    if scenario.kill_notifier:
        out.append(("SIGKILL notifier", lambda: bounce("notifier", 1.0)))
    return out


async def inject(schedule: list[Fault], spread_s: float, log: list[str]) -> float:
    """Run the faults spread over 10-85 % of the submission window; returns the
    monotonic time the last one was over."""
    start = time.monotonic()
    for n, (name, act) in enumerate(schedule):
        at = start + spread_s * (0.1 + 0.75 * n / max(1, len(schedule)))
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        t0 = time.monotonic()
        await act()
        log.append(f"{name} at {t0 - start:.1f} s (took {time.monotonic() - t0:.1f} s)")
    return time.monotonic()


def service_env(infra: Infra, namespace: str, scenario: Scenario, secret: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return env | {
        "CONVEYOR_AMQP_URL": infra.amqp_url,
        "CONVEYOR_MONGODB_URL": infra.mongodb_url,
        "CONVEYOR_MONGODB_DB": f"conveyor_{namespace}",
        "CONVEYOR_NAMESPACE": namespace,
        "CONVEYOR_LOG_LEVEL": scenario.log_level,
        "CONVEYOR_LOG_JSON": "true",
        "CONVEYOR_ADMIN_KEY": ADMIN_KEY,
        "CONVEYOR_SECRETS_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "CONVEYOR_RATE_LIMIT_PER_S": "0",
        "CONVEYOR_WEBHOOK_SECRET": secret,
        "CONVEYOR_NOTIFY_ALLOWED_NETWORKS": "127.0.0.1/32",
        "CONVEYOR_OUTBOX_GRACE_S": "5",
        "CONVEYOR_METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }


async def wait_terminal(
    rec_jobs: Callable[[], Awaitable[dict[str, object]]], ids: set[str], deadline: float
) -> float | None:
    """Poll until every id is terminal; the monotonic time it happened, or None."""
    while time.monotonic() < deadline:
        jobs = await rec_jobs()
        waiting = [
            i
            for i in ids
            if i not in jobs or jobs[i]["status"] not in TERMINAL  # type: ignore[index]
        ]
        if not waiting:
            return time.monotonic()
        await asyncio.sleep(2)
    return None


async def run(scenario: Scenario, infra: Infra, workdir: Path) -> Reckoning:
    started = time.monotonic()
    namespace = f"chaos{uuid.uuid4().hex[:8]}"
    secret = new_secret()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per webhook otherwise
    server = HTTPServer(host="127.0.0.1", port=free_port())
    server.start()
    receiver = Receiver(server)
    stack = ChaosStack(infra, service_env(infra, namespace, scenario, secret), workdir, free_port())
    stack.add("api", "conveyor_api.main", CONVEYOR_API_PORT=str(stack.api_port))
    for i in range(scenario.workers):
        stack.add(
            f"worker-{i}",
            "conveyor_worker.main",
            CONVEYOR_WORKER_ID=f"w{i}",
            CONVEYOR_WORKER_CONCURRENCY=str(scenario.worker_concurrency),
        )
    stack.add("notifier", "conveyor_notifier.main")
    mongo = make_client(infra.mongodb_url, 10_000, "conveyor-chaos")
    db = f"conveyor_{namespace}"
    rec = Reckoning()
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as client:
            await wait_ready(client, 120)
            requests = plan(scenario.jobs, scenario.seed, receiver.url, namespace)
            deadline = time.monotonic() + scenario.deadline_s
            submitter = Submitter(client, deadline)
            load = asyncio.create_task(
                submitter.run(requests, scenario.spread_s, scenario.client_concurrency)
            )
            last_fault = await inject(faults(scenario, stack), scenario.spread_s, rec.faults)
            await load
            rec.refused = len(submitter.refused)
            ids = {jid for r in requests for jid in r.job_ids}

            async def current() -> dict[str, object]:
                return dict(await stored_jobs(mongo, db))

            done_at = await wait_terminal(current, ids, deadline)
            rec.recovery_s = None if done_at is None else max(0.0, done_at - last_fault)
            jobs = await stored_jobs(mongo, db)
            reckon_jobs(rec, requests, jobs)
            while time.monotonic() < deadline:  # webhooks may still be on their way
                reckon_webhooks(rec, requests, jobs, list(receiver.requests), secret)
                if rec.webhooks_missing == 0:
                    break
                await asyncio.sleep(2)
            listed = await listed_dead_letters(client)
            rec.parked_listed = sum(
                1
                for jid, doc in jobs.items()
                if doc["status"] == "failed" and doc.get("dead_letter") and jid in listed
            )
    finally:
        stack.close()
        server.clear()
        if server.is_running():
            server.stop()
        with contextlib.suppress(Exception):
            await mongo.drop_database(db)
        await mongo.close()
        with contextlib.suppress(Exception):
            async with await aio_pika.connect(infra.amqp_url) as conn:
                await delete_topology(await conn.channel(), build_topology(namespace))
    rec.wall_s = time.monotonic() - started
    rec.check()
    return rec
