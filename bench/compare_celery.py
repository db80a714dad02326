"""The Celery side of ``bench/compare.py``: one ``celery worker`` (prefork pool,
W processes) on a queue of its own, results in MongoDB, tasks sent with
``apply_async`` from threads of this process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
from pymongo import AsyncMongoClient

from celery_peer import TASK_NAME, make_app, read_counts
from compare_common import (
    RunResult,
    RunSpec,
    check_alive,
    log,
    stop_processes,
    sweep_rabbit,
    wait_done,
    with_db,
)
from cpu import CpuMeter, per_job_ms

BENCH = Path(__file__).resolve().parent


async def wait_consumer(amqp_url: str, queue: str, alive: Any, timeout_s: float = 120) -> None:
    """Until ``queue`` exists and has a consumer (the worker's main process)."""
    deadline = time.monotonic() + timeout_s
    async with await aio_pika.connect(amqp_url) as conn:
        while time.monotonic() < deadline:
            alive()
            channel = await conn.channel()
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                declared = await channel.declare_queue(queue, passive=True)
                if declared.declaration_result.consumer_count:
                    await channel.close()
                    return
                await channel.close()
            await asyncio.sleep(0.2)
    raise RuntimeError(f"no consumer on {queue} within {timeout_s} s")


def submit(task: Any, result: RunResult, clients: int, stop: threading.Event) -> None:
    """``task.apply_async`` of N tasks from ``clients`` threads; each call blocks
    until the broker has confirmed the message (``confirm_publish``)."""
    counter = iter(range(result.jobs))
    lock = threading.Lock()
    failures: list[str] = []

    def submitter() -> None:
        while not stop.is_set():
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                task.apply_async(args=(i,))
            except Exception as exc:  # noqa: BLE001 - any failed publish is an error, like a non-202
                failures.append(repr(exc))
                continue
            result.latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=submitter, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.accepted = len(result.latencies)
    result.errors = len(failures)
    if failures:
        result.notes.append(f"{len(failures)} publishes failed, first: {failures[0]}")


async def run_celery(spec: RunSpec, result: RunResult) -> None:
    """Fills ``result`` as it goes (a failed run keeps what it got)."""
    queue = f"celerybench{uuid.uuid4().hex[:8]}"
    db = f"celery_{queue}"
    tag = f"celery w={spec.workers}"
    backend = with_db(spec.mongodb_url, db)
    count_dir = spec.out_dir / f"{queue}-commands"
    count_dir.mkdir(parents=True)
    log_path = spec.out_dir / f"{queue}.log"
    logs = log_path.open("wb")
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])),
        "CELERY_PEER_BROKER": spec.amqp_url,
        "CELERY_PEER_BACKEND": backend,
        "CELERY_PEER_QUEUE": queue,
        "CELERY_PEER_CONFIRM_PUBLISH": "1" if spec.confirm_publish else "0",
        "CELERY_PEER_COUNT_DIR": str(count_dir),
    }
    cmd = [
        *(sys.executable, "-m", "celery", "-A", "celery_peer", "worker"),
        *("--pool=prefork", f"--concurrency={spec.workers}"),
        f"--prefetch-multiplier={spec.prefetch_multiplier}",
        *("-Q", queue, "-n", f"{queue}@%h", "--loglevel=WARNING"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
    procs: list[subprocess.Popen[bytes]] = []

    def alive() -> None:
        check_alive(procs, log_path)

    app = make_app(
        spec.amqp_url,
        backend,
        queue,
        confirm_publish=spec.confirm_publish,
        pool_limit=spec.clients,
    )
    stop = threading.Event()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        spec.mongodb_url, tz_aware=True, appname="celery-bench"
    )
    log(tag, f"queue {queue}, logs {log_path}")
    meter: CpuMeter | None = None
    try:
        async with asyncio.timeout(spec.deadline_s):
            procs.append(
                subprocess.Popen(
                    cmd, env=env, stdout=logs, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            await wait_consumer(spec.amqp_url, queue, alive)

            meter = CpuMeter({"workers": [procs[0].pid]}).__enter__()
            start = time.perf_counter()
            start_wall = time.time()
            await asyncio.to_thread(submit, app.tasks[TASK_NAME], result, spec.clients, stop)
            result.submit_s = time.perf_counter() - start
            log(tag, f"{result.accepted} sent in {result.submit_s:.1f} s")

            meta = mongo[db]["celery_taskmeta"]
            await wait_done(
                tag,
                spec.amqp_url,
                queue,
                lambda: meta.count_documents({"status": "SUCCESS"}),
                result.accepted,
                alive,
            )
            last = await meta.find_one({"status": "SUCCESS"}, sort=[("date_done", -1)])
            assert last is not None
            # Celery stores date_done in UTC; the tz-aware client hands it back as such.
            result.end_to_end_s = last["date_done"].timestamp() - start_wall
            meter.__exit__()
            cpu = meter.between(start_wall, start_wall + result.end_to_end_s)
            result.cpu_ms = per_job_ms(cpu, result.accepted)
    finally:
        if meter is not None:
            meter.__exit__()
        stop.set()
        # Warm shutdown: the pool processes write their counts as they exit.
        await asyncio.to_thread(stop_processes, procs, groups=True)
        app.close()
        logs.close()
        commands, failures, files = read_counts(count_dir)
        if files:
            result.store_commands = commands
            result.notes.append(f"pymongo counts from {files} pool processes")
        if failures:
            result.notes.append(f"failed store commands {failures}")
        shutil.rmtree(count_dir, ignore_errors=True)
        await mongo.drop_database(db)
        await mongo.close()
        deleted = await sweep_rabbit(spec.rabbit_api, queue)
        log(tag, f"cleaned up: worker, database {db}, {len(deleted)} queues/exchanges")
