"""`make run`'s supervisor: the whole stack in one foreground process, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.infra import free_port
from tests.stack import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def test_supervisor_runs_the_stack_and_stops_cleanly(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "supervise.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "supervise.py")],
        env=stack.env(api_port=port, run_workers=2),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, (tmp_path / "supervise.log").read_text()
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            resp = await client.post("/v1/jobs", json={"type": "echo", "payload": {"x": 1}})
            assert resp.status_code == 202
            job_id = resp.json()["id"]
            while (job := (await client.get(f"/v1/jobs/{job_id}")).json())["status"] != "completed":
                assert time.monotonic() < deadline + 30, job
                await asyncio.sleep(0.1)
            stats = (await client.get("/v1/stats")).json()
            assert stats["queues"]["work"]["consumers"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        log.close()
    output = (tmp_path / "supervise.log").read_text()
    assert code == 0, output
    assert "api stopped" in output
    assert output.count("worker stopped") == 2
    assert "notifier stopped" in output
