"""Notifier delivery benchmark (not a test).

Starts M notifier processes against the local RabbitMQ/MongoDB (run
``scripts/infra.sh up`` first), runs a local webhook receiver (uvicorn, 200 to
everything), publishes N job events that each ask for one webhook, and reports
deliveries/s from the first publish until the receiver has every event and
until every delivery is recorded ``delivered`` in MongoDB, plus the
event-to-receipt latency p50/p99.

    uv run python bench/notify.py --events 1000 --notifiers 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import uvicorn

from benchlib import add_server_args, completed_event, free_port, percentile, service_env
from conveyor_kernel.broker import Publisher, connect
from conveyor_kernel.mongo import make_client
from conveyor_kernel.notifications import new_secret
from conveyor_kernel.topology import build_topology
from conveyor_kernel.topology import delete as delete_topology

ROOT = Path(__file__).resolve().parent.parent


class Receiver:
    """ASGI app: records the first arrival of each webhook-id, answers 200."""

    def __init__(self) -> None:
        self.first_seen: dict[str, float] = {}
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.requests += 1
        headers = dict(scope["headers"])
        self.first_seen.setdefault(headers[b"webhook-id"].decode(), time.time())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--notifiers", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=32, help="per notifier")
    add_server_args(ap)
    args = ap.parse_args()

    ns = f"bench{uuid.uuid4().hex[:8]}"
    db = f"conveyor_{ns}"
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    secret = new_secret()
    receiver = Receiver()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    env = service_env(
        args.amqp_url,
        args.mongodb_url,
        ns,
        CONVEYOR_WEBHOOK_SECRET=secret,
        CONVEYOR_NOTIFY_ALLOWED_NETWORKS='["127.0.0.1/32"]',
        CONVEYOR_NOTIFY_CONCURRENCY=str(args.concurrency),
    )
    logs = (out_dir / f"{ns}.log").open("wb")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "conveyor_notifier.main"],
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
        )
        for _ in range(args.notifiers)
    ]
    topology = build_topology(ns)
    connection = await connect(args.amqp_url, "conveyor-bench")
    publisher = Publisher(connection, topology, 10)
    await publisher.open()
    mongo = make_client(args.mongodb_url, 10_000, "conveyor-bench")
    try:
        await asyncio.sleep(3)  # notifiers attach
        url = f"http://127.0.0.1:{port}/hook"
        events = [completed_event(url, {"i": i}) for i in range(args.events)]
        start = time.perf_counter()
        start_wall = time.time()
        sent_at: dict[str, float] = {}
        for event in events:
            sent_at[event.id] = time.time()
            await publisher.publish_event(
                event.model_dump_json().encode(), event.type.value, event.id
            )
        published_s = time.perf_counter() - start
        while len(receiver.first_seen) < args.events:
            if time.perf_counter() - start > 1800:
                raise SystemExit(f"timed out with {len(receiver.first_seen)} received")
            await asyncio.sleep(0.05)
        received_s = time.perf_counter() - start
        deliveries = mongo[db]["deliveries"]
        while (done_n := await deliveries.count_documents({"status": "delivered"})) < args.events:
            await asyncio.sleep(0.2)
        recorded_s = time.perf_counter() - start
        latencies = [receiver.first_seen[k] - sent_at[k] for k in sent_at]
        summary = {
            "events": args.events,
            "notifiers": args.notifiers,
            "concurrency_per_notifier": args.concurrency,
            "publish_s": round(published_s, 2),
            "all_received_s": round(received_s, 2),
            "all_recorded_s": round(recorded_s, 2),
            "deliveries_per_s_received": round(args.events / received_s, 1),
            "deliveries_per_s_recorded": round(done_n / recorded_s, 1),
            "receiver_requests": receiver.requests,
            "event_to_receipt_p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "event_to_receipt_p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_wall)),
        }
        print(json.dumps(summary, indent=2))
        (out_dir / f"notify-{ns}.json").write_text(json.dumps(summary, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        channel = await connection.channel()
        await delete_topology(channel, topology)
        await publisher.close()
        await connection.close()
        await mongo.drop_database(db)
        await mongo.close()
        server.should_exit = True
        await serving


if __name__ == "__main__":
    asyncio.run(main())
