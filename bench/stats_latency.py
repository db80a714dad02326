"""``GET /v1/stats`` answer times on a big store with a busy notifier (not a test).

Starts the API, one worker and a notifier on their own namespace, subscribes a
webhook to a receiver that is gone (connection refused, retried every second),
runs ``--hooked`` jobs so that many deliveries keep retrying, stops the worker,
stores ``--jobs`` jobs in all, then polls ``/v1/stats`` for ``--seconds`` from
``--clients`` concurrent clients and reports answer-time percentiles, the counts'
age and how many answers were stale. For comparison it also times one full count
(what every request cost before the counts were cached).

    uv run python bench/stats_latency.py --jobs 20000 --hooked 500 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

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
from conveyor_kernel.store import JobStore

ROOT = Path(__file__).resolve().parent.parent


async def submit(client: httpx.AsyncClient, count: int, job: dict[str, object]) -> None:
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        resp = await client.post("/v1/jobs/batch", json={"jobs": [job] * n}, timeout=120)
        resp.raise_for_status()


async def poll(
    client: httpx.AsyncClient, until: float, out: list[tuple[float, dict[str, Any]]]
) -> None:
    while time.monotonic() < until:
        t0 = time.perf_counter()
        resp = await client.get("/v1/stats", timeout=60)
        out.append((time.perf_counter() - t0, resp.json() if resp.status_code == 200 else {}))
        await asyncio.sleep(0.25)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--hooked", type=int, default=500, help="jobs whose webhook keeps failing")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=4)
    add_server_args(ap)
    args = ap.parse_args()

    ns = f"stats{uuid.uuid4().hex[:8]}"
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    api_port, dead_port = free_port(), free_port()  # nothing listens on dead_port
    env = service_env(
        args.amqp_url,
        args.mongodb_url,
        ns,
        CONVEYOR_API_PORT=str(api_port),
        CONVEYOR_NOTIFY_ALLOWED_NETWORKS="127.0.0.1/32",
        CONVEYOR_NOTIFY_RETRY_SCHEDULE_S=",".join(["1"] * 50),
        CONVEYOR_NOTIFY_DISABLE_AFTER_FAILED_DELIVERIES="0",
        CONVEYOR_METRICS_PORT="0",
    )
    logs = (out_dir / f"{ns}.log").open("wb")

    def spawn(module: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", module]
        return subprocess.Popen(cmd, env=env, stdout=logs, stderr=subprocess.STDOUT)

    procs = {name: spawn(f"conveyor_{name}.main") for name in ("api", "worker", "notifier")}
    mongo = make_client(args.mongodb_url, 10_000, "conveyor-bench")
    try:
        async with httpx.AsyncClient(
            headers=AUTH, base_url=f"http://127.0.0.1:{api_port}"
        ) as client:
            await wait_api_ready(client)
            hook = {"url": f"http://127.0.0.1:{dead_port}/gone", "events": ["job.completed"]}
            (await client.post("/v1/webhooks", json=hook)).raise_for_status()
            await submit(client, args.hooked, {"type": "echo"})
            while (await client.get("/v1/stats")).json()["by_status"]["completed"] < args.hooked:
                await asyncio.sleep(1)
            procs["worker"].send_signal(signal.SIGTERM)
            procs["worker"].wait(60)
            await submit(client, args.jobs - args.hooked, {"type": "echo"})
            t0 = time.perf_counter()
            total = (await JobStore(mongo, f"conveyor_{ns}").stats(600)).total
            full_count_s = time.perf_counter() - t0
            answers: list[tuple[float, dict[str, Any]]] = []
            until = time.monotonic() + args.seconds
            await asyncio.gather(*(poll(client, until, answers) for _ in range(args.clients)))
        times = [t for t, _ in answers]
        ok = [a for _, a in answers if a]
        ages = [a["counts_age_s"] for a in ok]
        summary = {
            "jobs_stored": total,
            "deliveries_retrying_against_a_dead_receiver": args.hooked,
            "one_full_count_s": round(full_count_s, 2),
            "requests": len(answers),
            "answers_200": len(ok),
            "answer_p50_ms": round(percentile(times, 50) * 1000, 1),
            "answer_p99_ms": round(percentile(times, 99) * 1000, 1),
            "answer_max_ms": round(max(times) * 1000, 1),
            "stale_answers": sum(1 for a in ok if a["counts_stale"]),
            "counts_age_p50_s": round(percentile(ages, 50), 1),
            "counts_age_max_s": round(max(ages), 1),
        }
        print(json.dumps(summary, indent=2))
        (out_dir / f"stats-{ns}.json").write_text(json.dumps(summary, indent=2))
    finally:
        await stop_and_clean(list(procs.values()), mongo, args.amqp_url, ns)


if __name__ == "__main__":
    asyncio.run(main())
