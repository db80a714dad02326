"""End-to-end throughput benchmark (not a test).

Starts one API and M worker processes against the local RabbitMQ/MongoDB (run
``scripts/infra.sh up`` first; ``make bench`` does), submits N no-op ``echo``
jobs over HTTP from a concurrent client, and reports:

* jobs/s from the first submit to the last job recorded ``completed`` in MongoDB,
* submit rate, and enqueue latency (POST round trip) p50/p99.

    uv run python bench/throughput.py --jobs 20000 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import httpx

from benchlib import (
    AUTH,
    add_server_args,
    free_port,
    percentile,
    post_echo_jobs,
    service_env,
    wait_api_ready,
)
from conveyor_kernel.broker import queue_stats
from conveyor_kernel.mongo import make_client
from conveyor_kernel.topology import build_topology
from conveyor_kernel.topology import delete as delete_topology

ROOT = Path(__file__).resolve().parent.parent


async def scrape_costs(urls: list[str]) -> list[dict[str, object]]:
    """Size, sample count and time of one scrape of each /metrics endpoint."""
    costs: list[dict[str, object]] = []
    async with httpx.AsyncClient(headers=AUTH, timeout=10) as client:
        for url in urls:
            t0 = time.perf_counter()
            resp = await client.get(url)
            elapsed = time.perf_counter() - t0
            samples = [ln for ln in resp.text.splitlines() if ln and not ln.startswith("#")]
            costs.append(
                {
                    "url": url,
                    "bytes": len(resp.content),
                    "samples": len(samples),
                    "ms": round(elapsed * 1000, 1),
                }
            )
    return costs


async def watch(client: httpx.AsyncClient, events: list[int]) -> None:
    """Read the event stream (counting events, and ``dropped`` as -1) until
    cancelled, reconnecting with Last-Event-ID like a dashboard would."""
    last_id = None
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        async with client.stream("GET", "/v1/events/stream", timeout=None, headers=headers) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("event: job."):
                    events.append(1)
                elif line.startswith("event: dropped"):
                    events.append(-1)
                elif line.startswith("id: "):
                    last_id = line[4:]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-concurrency", type=int, default=16)
    ap.add_argument("--client-concurrency", type=int, default=64)
    ap.add_argument(
        "--batch",
        type=int,
        default=0,
        help="submit through POST /v1/jobs/batch, this many jobs per request",
    )
    ap.add_argument(
        "--no-metrics",
        action="store_true",
        help="workers serve no /metrics and the API reads no queue statistics (A/B cost)",
    )
    ap.add_argument(
        "--submit-only",
        action="store_true",
        help="measure submission only; do not wait for the jobs to complete",
    )
    ap.add_argument(
        "--watch",
        action="store_true",
        help="keep one client on GET /v1/events/stream during the run (the cost of a "
        "dashboard being open: live events are sent only while someone watches)",
    )
    ap.add_argument(
        "--otlp",
        metavar="URL",
        help="trace: the services export OpenTelemetry spans to this OTLP/HTTP endpoint "
        "(bench/otlp_sink.py is one); by default tracing is off",
    )
    add_server_args(ap)
    args = ap.parse_args()

    ns = f"bench{uuid.uuid4().hex[:8]}"
    db = f"conveyor_{ns}"
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = service_env(
        args.amqp_url,
        args.mongodb_url,
        ns,
        CONVEYOR_API_PORT=str(port),
        CONVEYOR_WORKER_CONCURRENCY=str(args.worker_concurrency),
        CONVEYOR_QUEUE_METRICS_INTERVAL_S="0" if args.no_metrics else "5",
    )
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    if args.otlp:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = args.otlp
    procs: list[subprocess.Popen[bytes]] = []
    logs = (out_dir / f"{ns}.log").open("wb")

    def spawn(module: str, **extra: str) -> None:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", module],
                env=env | extra,
                stdout=logs,
                stderr=subprocess.STDOUT,
            )
        )

    spawn("conveyor_api.main")
    metrics_ports: list[int] = []
    for i in range(args.workers):
        metrics_ports.append(free_port())  # one /metrics port per worker process
        spawn(
            "conveyor_worker.main",
            CONVEYOR_WORKER_ID=f"bench-w{i}",
            CONVEYOR_METRICS_PORT="0" if args.no_metrics else str(metrics_ports[-1]),
        )
    mongo = make_client(args.mongodb_url, 10_000, "conveyor-bench")
    jobs = mongo[db]["jobs"]
    limits = httpx.Limits(max_connections=args.client_concurrency)
    try:
        async with httpx.AsyncClient(
            headers=AUTH, base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
        ) as client:
            await wait_api_ready(client)
            await asyncio.sleep(2)  # let the workers attach to the queue
            latencies: list[float] = []
            errors = 0
            statuses: dict[int, int] = {}

            async def batch_submitter() -> None:
                nonlocal errors
                for first in batches:
                    size = min(args.batch, args.jobs - first)
                    body = {
                        "jobs": [{"type": "echo", "payload": {"i": first + k}} for k in range(size)]
                    }
                    t0 = time.perf_counter()
                    resp = await client.post("/v1/jobs/batch", json=body)
                    latencies.append(time.perf_counter() - t0)
                    code = resp.status_code
                    statuses[code] = statuses.get(code, 0) + size
                    errors += size if code != 202 else 0

            batches = iter(range(0, args.jobs, args.batch or 1))
            watched: list[int] = []
            watcher = asyncio.create_task(watch(client, watched)) if args.watch else None
            if watcher is not None:
                await asyncio.sleep(1)  # subscribed and announced

            start = time.perf_counter()
            start_wall = time.time()
            if args.batch:
                workers_n = max(1, min(args.client_concurrency, 4))
                await asyncio.gather(*(batch_submitter() for _ in range(workers_n)))
            else:
                base = f"http://127.0.0.1:{port}"
                await post_echo_jobs(base, args.jobs, args.client_concurrency, latencies, statuses)
                errors = args.jobs - statuses.get(202, 0)
            submitted_s = time.perf_counter() - start
            accepted = statuses.get(202, 0)
            print(f"submitted in {submitted_s:.1f} s, responses {statuses}", file=sys.stderr)
            if args.submit_only:
                summary = {
                    "mode": f"batch of {args.batch}" if args.batch else "single",
                    "jobs": args.jobs,
                    "accepted": accepted,
                    "errors": errors,
                    "submit_s": round(submitted_s, 2),
                    "submit_rate_per_s": round(accepted / submitted_s, 1),
                    "request_p50_ms": round(percentile(latencies, 50) * 1000, 2),
                    "request_p99_ms": round(percentile(latencies, 99) * 1000, 2),
                }
                print(json.dumps(summary, indent=2))
                return
            # Watch the broker (cheap) rather than counting documents (a collection
            # scan on FerretDB) until the queue is drained, then count once.
            async with await aio_pika.connect(args.amqp_url) as conn:
                channel = await conn.channel()
                work = build_topology(ns).work_queue
                while True:
                    q = await queue_stats(channel, work)
                    print(f"  {q.messages} messages waiting", file=sys.stderr)
                    if q.messages == 0:
                        done = await jobs.count_documents({"status": "completed"})
                        if done >= accepted:
                            break
                        print(f"  {done}/{accepted} completed", file=sys.stderr)
                    if time.perf_counter() - start > 3600:
                        raise SystemExit("timed out")
                    await asyncio.sleep(5)
            last = await jobs.find_one({"status": "completed"}, sort=[("finished_at", -1)])
            assert last is not None
            total_s = last["finished_at"].timestamp() - start_wall
            if watcher is not None:
                watcher.cancel()
                print(
                    f"  the watcher read {watched.count(1)} events,"
                    f" dropped {watched.count(-1)} times",
                    file=sys.stderr,
                )
        result = {
            "mode": f"batch of {args.batch}" if args.batch else "single",
            "jobs": args.jobs,
            "accepted": accepted,
            "watched": args.watch,
            "traced": bool(args.otlp),
            "workers": args.workers,
            "worker_concurrency": args.worker_concurrency,
            "client_concurrency": args.client_concurrency,
            "errors": errors,
            "submit_rate_per_s": round(args.jobs / submitted_s, 1),
            "end_to_end_jobs_per_s": round(accepted / total_s, 1),
            "end_to_end_s": round(total_s, 2),
            "enqueue_p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "enqueue_p99_ms": round(percentile(latencies, 99) * 1000, 2),
            "enqueue_mean_ms": round(statistics.fmean(latencies) * 1000, 2),
            "scrapes": []
            if args.no_metrics
            else await scrape_costs(
                [f"http://127.0.0.1:{port}/metrics"]
                + [f"http://127.0.0.1:{p}/metrics" for p in metrics_ports]
            ),
        }
        print(json.dumps(result, indent=2))
        (out_dir / f"{ns}.json").write_text(json.dumps(result, indent=2))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        await mongo.drop_database(db)
        await mongo.close()
        async with await aio_pika.connect(args.amqp_url) as conn:
            channel = await conn.channel()
            await delete_topology(channel, build_topology(ns))


if __name__ == "__main__":
    asyncio.run(main())
