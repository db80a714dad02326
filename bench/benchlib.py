"""Helpers the benchmark scripts share (imported as ``benchlib``: run scripts as
``uv run python bench/<script>.py``, which puts this directory on ``sys.path``)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aio_pika
import aiohttp
import httpx
from pymongo import AsyncMongoClient

from conveyor_kernel.events import JobEvent, job_event
from conveyor_kernel.model import Job, JobStatus, JobSubmission, utcnow
from conveyor_kernel.mongo import Document
from conveyor_kernel.topology import build_topology
from conveyor_kernel.topology import delete as delete_topology

# The admin key of every Conveyor process a bench starts (CONVEYOR_ADMIN_KEY), and
# the header its clients send; rate limits are off for the bench's processes.
ADMIN_KEY = os.environ.get("BENCH_ADMIN_KEY") or secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def add_server_args(ap: argparse.ArgumentParser) -> None:
    """``--amqp-url`` and ``--mongodb-url`` (defaults: the environment, then local)."""
    ap.add_argument(
        "--amqp-url",
        default=os.environ.get("CONVEYOR_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    ap.add_argument(
        "--mongodb-url",
        default=os.environ.get("CONVEYOR_MONGODB_URL", "mongodb://127.0.0.1:27017/"),
    )


async def wait_api_ready(client: httpx.AsyncClient, tries: int = 300) -> None:
    """Poll ``/readyz`` every 0.2 s until it answers 200 (``tries`` at most)."""
    for _ in range(tries):
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def service_env(amqp_url: str, mongodb_url: str, namespace: str, **extra: str) -> dict[str, str]:
    """The environment of a Conveyor process for this run (no inherited CONVEYOR_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return env | {
        "CONVEYOR_AMQP_URL": amqp_url,
        "CONVEYOR_MONGODB_URL": mongodb_url,
        "CONVEYOR_MONGODB_DB": f"conveyor_{namespace}",
        "CONVEYOR_NAMESPACE": namespace,
        "CONVEYOR_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "CONVEYOR_LOG_JSON": "true",
        "CONVEYOR_ADMIN_KEY": ADMIN_KEY,
        "CONVEYOR_SECRETS_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "CONVEYOR_RATE_LIMIT_PER_S": "0",
        **extra,
    }


def completed_event(webhook_url: str, payload: dict[str, object] | None = None) -> JobEvent:
    """The ``job.completed`` event of a fresh echo job that asks for a webhook."""
    sub = JobSubmission(
        type="echo", payload=payload or {}, notify={"webhook": {"url": webhook_url}}
    )
    now = utcnow()
    job = Job.from_submission(sub, default_timeout_s=5).model_copy(
        update={"status": JobStatus.COMPLETED, "finished_at": now, "updated_at": now}
    )
    event = job_event(job, "http://localhost:8000")
    assert event is not None
    return event


def echo_body(i: int) -> dict[str, Any]:
    return {"type": "echo", "payload": {"i": i}}


async def post_echo_jobs(
    base_url: str,
    jobs: int,
    clients: int,
    latencies: list[float],
    statuses: dict[int, int],
    body_of: Callable[[int], dict[str, Any]] = echo_body,
) -> None:
    """``POST /v1/jobs`` of ``jobs`` echo jobs from ``clients`` concurrent submitters,
    appending each round trip to ``latencies`` and counting answers in ``statuses``
    (``0``: no answer).

    The load generator is aiohttp: httpx's client, at 64 connections, tops out near
    100 requests/s on this machine and would measure itself, not the API.
    """
    counter = iter(range(jobs))
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        base_url, connector=connector, timeout=timeout, headers=AUTH
    ) as session:

        async def submitter() -> None:
            for i in counter:
                t0 = time.perf_counter()
                try:
                    async with session.post("/v1/jobs", json=body_of(i)) as resp:
                        await resp.read()
                        code = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    print(f"request {i}: {exc!r}", file=sys.stderr)
                    statuses[0] = statuses.get(0, 0) + 1
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[code] = statuses.get(code, 0) + 1

        await asyncio.gather(*(submitter() for _ in range(clients)))


async def stop_and_clean(
    procs: list[subprocess.Popen[bytes]],
    mongo: AsyncMongoClient[Document],
    amqp_url: str,
    namespace: str,
) -> None:
    """SIGTERM the run's processes and wait for them, then drop its database and
    delete its exchanges and queues."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=60)
    await mongo.drop_database(f"conveyor_{namespace}")
    await mongo.close()
    async with await aio_pika.connect(amqp_url) as conn:
        await delete_topology(await conn.channel(), build_topology(namespace))
