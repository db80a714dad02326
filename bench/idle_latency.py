"""Latency of one job on an idle stack (not a test).

Starts one API and one worker against the local RabbitMQ/MongoDB, then submits
``--jobs`` echo jobs one at a time, each only after the previous one completed,
and reports p50/p99 of:

* enqueue to start: the attempt's ``started_at`` minus the job's ``created_at``
  (both stamped by Conveyor, so no client overhead),
* submit round trip: the client's POST /v1/jobs,
* submit to completed as the client sees it (polling GET every 2 ms).

    uv run python bench/idle_latency.py --jobs 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

from benchlib import (
    AUTH,
    add_server_args,
    free_port,
    percentile,
    service_env,
    stop_and_clean,
    wait_api_ready,
)
from conveyor_kernel.mongo import make_client

ROOT = Path(__file__).resolve().parent.parent


def ms(values: list[float], p: float) -> float:
    return round(percentile(values, p) * 1000, 2)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=200)
    add_server_args(ap)
    args = ap.parse_args()
    ns = f"idle{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = service_env(
        args.amqp_url,
        args.mongodb_url,
        ns,
        CONVEYOR_API_PORT=str(port),
        CONVEYOR_QUEUE_METRICS_INTERVAL_S="0",
        CONVEYOR_METRICS_PORT="0",
    )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = (out_dir / f"{ns}.log").open("wb")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", module], env=env, stdout=logs, stderr=subprocess.STDOUT
        )
        for module in ("conveyor_api.main", "conveyor_worker.main")
    ]
    mongo = make_client(args.mongodb_url, 10_000, "conveyor-bench")
    to_start: list[float] = []
    submit: list[float] = []
    to_done: list[float] = []
    try:
        async with httpx.AsyncClient(
            headers=AUTH, base_url=f"http://127.0.0.1:{port}", timeout=30
        ) as client:
            await wait_api_ready(client)
            await asyncio.sleep(2)  # let the worker attach to the queue
            for i in range(args.jobs):
                t0 = time.perf_counter()
                resp = await client.post("/v1/jobs", json={"type": "echo", "payload": {"i": i}})
                submit.append(time.perf_counter() - t0)
                assert resp.status_code == 202, resp.text
                job_id = resp.json()["id"]
                while True:
                    job = (await client.get(f"/v1/jobs/{job_id}")).json()
                    if job["status"] == "completed":
                        break
                    await asyncio.sleep(0.002)
                to_done.append(time.perf_counter() - t0)
                started = datetime.fromisoformat(job["attempts"][0]["started_at"])
                created = datetime.fromisoformat(job["created_at"])
                to_start.append((started - created).total_seconds())
        result = {
            "jobs": args.jobs,
            "enqueue_to_start_p50_ms": ms(to_start, 50),
            "enqueue_to_start_p99_ms": ms(to_start, 99),
            "submit_p50_ms": ms(submit, 50),
            "submit_p99_ms": ms(submit, 99),
            "submit_to_completed_p50_ms": ms(to_done, 50),
            "submit_to_completed_p99_ms": ms(to_done, 99),
        }
        print(json.dumps(result, indent=2))
    finally:
        await stop_and_clean(procs, mongo, args.amqp_url, ns)


if __name__ == "__main__":
    asyncio.run(main())
