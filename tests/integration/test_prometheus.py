"""A real Prometheus (Debian's package) scrapes the local stack and answers queries about it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.infra import free_port
from tests.stack import ADMIN_KEY, Stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def query(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/query", params={"query": promql})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_job_counters(stack: Stack, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: scripts/infra.sh up installs Debian's prometheus"
    await stack.start_api()
    worker = await stack.start_worker()
    jobs = [await stack.submit("echo", payload={"i": i}) for i in range(3)]
    for job in jobs:
        await stack.wait_job(job["id"])
    assert stack.api_url is not None
    api_target = stack.api_url.removeprefix("http://")
    rules = tmp_path / "alerts.yml"
    shutil.copy(ROOT / "deploy" / "prometheus" / "alerts.yml", rules)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "conveyor-api",
                "authorization": {"type": "Bearer", "credentials": ADMIN_KEY},
                "static_configs": [{"targets": [api_target], "labels": {"service": "api"}}],
            },
            {
                "job_name": "conveyor-worker",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{worker.metrics_port}"],
                        "labels": {"service": "worker"},
                    }
                ],
            },
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as prom:
            deadline = time.monotonic() + 60
            while True:  # 503 until the TSDB is open
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    if (await prom.get("/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "Prometheus not ready in 60 s"
                await asyncio.sleep(0.2)
            completed: list[dict[str, Any]] = []
            while True:
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    completed = await query(
                        prom,
                        'sum by (type) (conveyor_jobs_processed_total{outcome="completed"})',
                    )
                    scraped = {r["metric"]["job"] for r in await query(prom, "up")}
                except httpx.TransportError:
                    completed, scraped = [], set()
                if completed and scraped == {"conveyor-api", "conveyor-worker"}:
                    break
                assert time.monotonic() < deadline, "Prometheus never had the job counter"
                await asyncio.sleep(0.5)
            assert [(r["metric"], float(r["value"][1])) for r in completed] == [
                ({"type": "echo"}, 3.0)
            ]
            up = await query(prom, "up")
            assert {r["metric"]["job"]: r["value"][1] for r in up} == {
                "conveyor-api": "1",
                "conveyor-worker": "1",
            }
            submitted = await query(prom, "sum(conveyor_api_jobs_submitted_total)")
            assert float(submitted[0]["value"][1]) == 3.0
            rules_resp = (await prom.get("/api/v1/rules")).json()
            loaded = [r for g in rules_resp["data"]["groups"] for r in g["rules"]]
            assert len(loaded) == 6
            assert all(r["health"] in {"ok", "unknown"} for r in loaded), loaded
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
