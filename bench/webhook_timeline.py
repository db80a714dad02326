"""One webhook delivery that fails twice, then succeeds, on the default retry schedule.

Starts a notifier (default schedule: retries after 5 s, 30 s, ...) and a local
receiver answering 500, 503, then 200; publishes one ``job.completed`` event and
prints the attempt timeline recorded in MongoDB (takes ~40 s).

    uv run python bench/webhook_timeline.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import uvicorn

from benchlib import completed_event, free_port, service_env
from conveyor_kernel.broker import Publisher, connect
from conveyor_kernel.mongo import make_client
from conveyor_kernel.notifications import new_secret
from conveyor_kernel.topology import build_topology
from conveyor_kernel.topology import delete as delete_topology

REPLIES = [500, 503, 200]


async def main() -> None:
    amqp_url = os.environ.get("CONVEYOR_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    mongodb_url = os.environ.get("CONVEYOR_MONGODB_URL", "mongodb://127.0.0.1:27017/")
    ns = f"bench{uuid.uuid4().hex[:8]}"
    db = f"conveyor_{ns}"
    arrivals: list[tuple[float, int]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        status = REPLIES[min(len(arrivals), len(REPLIES) - 1)]
        arrivals.append((time.time(), status))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    env = service_env(
        amqp_url,
        mongodb_url,
        ns,
        CONVEYOR_WEBHOOK_SECRET=new_secret(),
        CONVEYOR_NOTIFY_ALLOWED_NETWORKS='["127.0.0.1/32"]',
    )
    proc = subprocess.Popen([sys.executable, "-m", "conveyor_notifier.main"], env=env)
    topology = build_topology(ns)
    connection = await connect(amqp_url, "conveyor-bench")
    publisher = Publisher(connection, topology, 10)
    await publisher.open()
    mongo = make_client(mongodb_url, 10_000, "conveyor-bench")
    try:
        await asyncio.sleep(3)
        event = completed_event(f"http://127.0.0.1:{port}/hook")
        await publisher.publish_event(event.model_dump_json().encode(), event.type.value, event.id)
        deliveries = mongo[db]["deliveries"]
        while True:
            doc = await deliveries.find_one({"event_id": event.id})
            if doc and doc["status"] in {"delivered", "failed"}:
                break
            await asyncio.sleep(0.5)
        rows = []
        previous_end = None
        for a in doc["attempts"]:
            at = a["at"]
            waited = None if previous_end is None else round((at - previous_end).total_seconds(), 3)
            rows.append(
                {
                    "attempt": a["number"],
                    "at": at.isoformat(),
                    "status_code": a["status_code"],
                    "outcome": a["outcome"],
                    "latency_ms": a["latency_ms"],
                    "waited_s_since_previous_attempt_ended": waited,
                    "next_attempt_at": a["next_attempt_at"].isoformat()
                    if a["next_attempt_at"]
                    else None,
                }
            )
            previous_end = at.timestamp() + a["latency_ms"] / 1000
            previous_end = at.fromtimestamp(previous_end, at.tzinfo)
        print(json.dumps({"webhook_id": event.id, "attempts": rows}, indent=2))
    finally:
        proc.terminate()
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
