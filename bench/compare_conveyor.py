"""The Conveyor side of ``bench/compare.py``: one API, W worker processes and one
notifier (``python -m conveyor_*.main``) on their own namespace and database,
driven only through HTTP, their /metrics, the broker and the jobs collection."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from benchlib import AUTH, echo_body, free_port, post_echo_jobs, service_env
from compare_common import (
    RunResult,
    RunSpec,
    check_alive,
    diff_counts,
    log,
    scrape_store_commands,
    stop_processes,
    sweep_rabbit,
    wait_done,
)
from cpu import CpuMeter, per_job_ms
from flames import Profiler
from preload import preload


async def wait_ready(
    client: httpx.AsyncClient, urls: list[str], alive: Any, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    for url in urls:
        while True:
            alive()
            try:
                if (await client.get(url)).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready within {timeout_s} s")
            await asyncio.sleep(0.2)


async def wait_consumers(client: httpx.AsyncClient, workers: int, alive: Any) -> str | None:
    """Until the work queue has a consumer per worker (``GET /v1/stats``); its name."""
    for _ in range(300):
        alive()
        queues = (await client.get("/v1/stats")).json().get("queues") or {}
        work = queues.get("work") or {}
        if work.get("consumers", 0) >= workers:
            return str(work["name"])
        await asyncio.sleep(0.2)
    return None


async def submit(base_url: str, result: RunResult, clients: int, sleep_ms: int = 0) -> None:
    """``POST /v1/jobs`` of N echo jobs (``sleep`` jobs of ``sleep_ms``, if set) from
    ``clients`` concurrent submitters."""
    statuses: dict[int, int] = {}
    body_of = echo_body
    if sleep_ms:
        seconds = sleep_ms / 1000

        def body_of(i: int) -> dict[str, Any]:
            return {"type": "sleep", "payload": {"seconds": seconds, "i": i}}

    await post_echo_jobs(base_url, result.jobs, clients, result.latencies, statuses, body_of)
    result.accepted = statuses.get(202, 0)
    result.errors = result.jobs - result.accepted
    if result.errors:
        result.notes.append(f"responses {statuses}")


async def run_conveyor(spec: RunSpec, result: RunResult) -> None:
    """Fills ``result`` as it goes (a failed run keeps what it got)."""
    ns = f"cmp{uuid.uuid4().hex[:8]}"
    db = f"conveyor_{ns}"
    tag = f"conveyor w={spec.workers}"
    port = free_port()
    env = service_env(
        spec.amqp_url,
        spec.mongodb_url,
        ns,
        CONVEYOR_API_PORT=str(port),
        CONVEYOR_WORKER_CONCURRENCY=str(spec.worker_concurrency),
    )
    log_path = spec.out_dir / f"{ns}.log"
    logs = log_path.open("wb")
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(module: str, **extra: str) -> None:
        cmd = [sys.executable, "-m", module]
        procs.append(subprocess.Popen(cmd, env=env | extra, stdout=logs, stderr=subprocess.STDOUT))

    def alive() -> None:
        check_alive(procs, log_path)

    api = f"http://127.0.0.1:{port}"
    worker_ports = [free_port() for _ in range(spec.workers)]
    notifier_port = free_port()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        spec.mongodb_url, tz_aware=True, appname="conveyor-bench"
    )
    log(tag, f"namespace {ns}, logs {log_path}")
    meter: CpuMeter | None = None
    profiler: Profiler | None = None
    try:
        async with asyncio.timeout(spec.deadline_s):
            preloaded_done = 0
            if spec.preload:
                loaded = await preload(mongo, db, spec.preload)
                preloaded_done = loaded.completed
                log(tag, f"{spec.preload:,} finished jobs preloaded in {loaded.seconds:.1f} s")
            spawn("conveyor_api.main")
            for i, p in enumerate(worker_ports):
                spawn(
                    "conveyor_worker.main",
                    CONVEYOR_WORKER_ID=f"{ns}-w{i}",
                    CONVEYOR_METRICS_PORT=str(p),
                )
            spawn("conveyor_notifier.main", CONVEYOR_METRICS_PORT=str(notifier_port))
            core = [f"{api}/metrics"] + [f"http://127.0.0.1:{p}/metrics" for p in worker_ports]
            notifier = [f"http://127.0.0.1:{notifier_port}/metrics"]
            limits = httpx.Limits(max_connections=spec.clients)
            async with httpx.AsyncClient(
                headers=AUTH, base_url=api, limits=limits, timeout=60
            ) as client:
                ready = [f"{api}/readyz"] + [
                    f"http://127.0.0.1:{p}/readyz" for p in [*worker_ports, notifier_port]
                ]
                await wait_ready(client, ready, alive)
                work_queue = await wait_consumers(client, spec.workers, alive)
                before = await scrape_store_commands(core)
                before_n = await scrape_store_commands(notifier)

                groups = {
                    "api": [procs[0].pid],
                    "workers": [p.pid for p in procs[1:-1]],
                    "notifier": [procs[-1].pid],
                }
                meter = CpuMeter(groups).__enter__()
                if spec.profile_dir is not None:
                    profiler = Profiler(spec.profile_dir)
                    profiler.start(
                        {"api": procs[0].pid, "notifier": procs[-1].pid}
                        | {f"worker-{i}": p.pid for i, p in enumerate(procs[1:-1])}
                    )
                start = time.perf_counter()
                start_wall = time.time()
                await submit(api, result, spec.clients, spec.sleep_ms)
                result.submit_s = time.perf_counter() - start
                log(tag, f"{result.accepted} accepted in {result.submit_s:.1f} s")

                jobs = mongo[db]["jobs"]

                async def completed() -> int:  # less the preloaded ones
                    return await jobs.count_documents({"status": "completed"}) - preloaded_done

                await wait_done(tag, spec.amqp_url, work_queue, completed, result.accepted, alive)
                last = await jobs.find_one({"status": "completed"}, sort=[("finished_at", -1)])
                assert last is not None
                result.end_to_end_s = last["finished_at"].timestamp() - start_wall
                meter.__exit__()
                if profiler is not None:
                    svgs = await asyncio.to_thread(profiler.stop)
                    result.notes.append(f"flame graphs: {', '.join(str(p) for p in svgs)}")
                cpu = meter.between(start_wall, start_wall + result.end_to_end_s)
                result.cpu_ms = per_job_ms(cpu, result.accepted)

                # Trailing work (event outbox, the notifier's fan-out) settles first.
                after, after_n = await settled_counts(core, notifier)
                if before is not None and after is not None:
                    result.store_commands = diff_counts(after, before)
                if before_n is not None and after_n is not None:
                    result.extra_commands = diff_counts(after_n, before_n)
    finally:
        if meter is not None:
            meter.__exit__()
        if profiler is not None:
            await asyncio.to_thread(profiler.stop)
        await asyncio.to_thread(stop_processes, procs)
        logs.close()
        await mongo.drop_database(db)
        await mongo.close()
        deleted = await sweep_rabbit(spec.rabbit_api, ns)
        log(tag, f"cleaned up: processes, database {db}, {len(deleted)} queues/exchanges")


async def settled_counts(
    core: list[str], notifier: list[str], timeout_s: float = 30
) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """Scrape until two scrapes a second apart agree (or ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    last: tuple[dict[str, float] | None, dict[str, float] | None] = (None, None)
    while True:
        now = (await scrape_store_commands(core), await scrape_store_commands(notifier))
        if now == last or time.monotonic() > deadline:
            return now
        last = now
        await asyncio.sleep(1)
