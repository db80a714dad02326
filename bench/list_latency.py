"""List, dead-letter and stats answer times with N jobs stored (not a test).

Stores ``--preload`` finished jobs in bulk (bench/preload.py: 89 % completed
``echo``, 10 % completed ``report-gen``, 1 % dead-lettered ``fail``, created over
the last day), starts one API on its own namespace, then asks each endpoint the
dashboard and the CLI use ``--requests`` times, one request at a time (each list
also fetches its second page with the cursor of the first), and reports answer
time percentiles and the page sizes. A cost that grows with what is stored shows
as the same table getting slower with ``--preload``.

    uv run python bench/list_latency.py --preload 1000000 --requests 20
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
from preload import preload

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    ("jobs", "/v1/jobs", {}),
    ("jobs status=completed", "/v1/jobs", {"status": "completed"}),
    ("jobs status=failed", "/v1/jobs", {"status": "failed"}),
    ("jobs status=queued (none)", "/v1/jobs", {"status": "queued"}),
    ("jobs type=echo", "/v1/jobs", {"type": "echo"}),
    ("jobs type=report-gen", "/v1/jobs", {"type": "report-gen"}),
    ("jobs type=sleep (none)", "/v1/jobs", {"type": "sleep"}),
    ("jobs status+type", "/v1/jobs", {"status": "completed", "type": "report-gen"}),
    ("jobs schedule_id (none)", "/v1/jobs", {"schedule_id": "0" * 32}),
    ("dead-letters", "/v1/dead-letters", {}),
    ("stats", "/v1/stats", None),
]


async def time_case(
    client: httpx.AsyncClient, path: str, params: dict[str, str] | None, requests: int
) -> dict[str, object]:
    times: list[float] = []
    sizes: list[int] = []
    errors: dict[int, int] = {}
    for _ in range(requests):
        cursor = None
        for _page in range(1 if params is None else 2):
            query = {} if params is None else {**params, "limit": "50"}
            if cursor:
                query["cursor"] = cursor
            t0 = time.perf_counter()
            resp = await client.get(path, params=query, timeout=120)
            times.append(time.perf_counter() - t0)
            if resp.status_code != 200:
                errors[resp.status_code] = errors.get(resp.status_code, 0) + 1
                break
            body = resp.json()
            if params is None:
                break
            sizes.append(len(body["items"]))
            cursor = body.get("next_cursor")
            if not cursor:
                break
    return {
        "requests": len(times),
        "p50_ms": round(percentile(times, 50) * 1000, 1),
        "p99_ms": round(percentile(times, 99) * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
        "items_per_page": sorted(set(sizes)),
        "errors": errors,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preload", type=int, default=100_000, metavar="N")
    ap.add_argument("--requests", type=int, default=20, help="per endpoint")
    add_server_args(ap)
    args = ap.parse_args()

    ns = f"lists{uuid.uuid4().hex[:8]}"
    db = f"conveyor_{ns}"
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = service_env(args.amqp_url, args.mongodb_url, ns, CONVEYOR_API_PORT=str(port))
    mongo = make_client(args.mongodb_url, 120_000, "conveyor-bench")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        loaded = await preload(mongo, db, args.preload)
        print(f"{args.preload:,} jobs preloaded in {loaded.seconds:.1f} s", file=sys.stderr)
        logs = (out_dir / f"{ns}.log").open("wb")
        cmd = [sys.executable, "-m", "conveyor_api.main"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=logs, stderr=subprocess.STDOUT))
        results: dict[str, object] = {"stored": args.preload}
        async with httpx.AsyncClient(headers=AUTH, base_url=f"http://127.0.0.1:{port}") as client:
            await wait_api_ready(client)
            for name, path, params in CASES:
                results[name] = await time_case(client, path, params, args.requests)
                print(f"  {name}: {results[name]}", file=sys.stderr)
        print(json.dumps(results, indent=2))
        (out_dir / f"lists-{ns}.json").write_text(json.dumps(results, indent=2))
    finally:
        await stop_and_clean(procs, mongo, args.amqp_url, ns)


if __name__ == "__main__":
    asyncio.run(main())
