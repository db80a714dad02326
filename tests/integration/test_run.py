"""`make run`'s supervisor: the whole stack in one foreground process, stopped by
SIGTERM; a crashed process is restarted while the others carry on."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.infra import free_port
from tests.stack import ADMIN, Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def test_supervisor_runs_the_stack_and_stops_cleanly(stack: Stack, tmp_path: Path) -> None:
    async with supervised(stack, tmp_path, run_workers=2) as (proc, client, log):
        await wait_ready(client, proc, log)
        resp = await client.post("/v1/jobs", json={"type": "echo", "payload": {"x": 1}})
        assert resp.status_code == 202
        job_id = resp.json()["id"]
        deadline = time.monotonic() + 60
        while (job := (await client.get(f"/v1/jobs/{job_id}")).json())["status"] != "completed":
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.1)
        stats = (await client.get("/v1/stats")).json()
        assert stats["queues"]["work"]["consumers"] == 2
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
    output = log.read_text()
    assert code == 0, output
    assert "api stopped" in output
    assert output.count("worker stopped") == 2
    assert "notifier stopped" in output
    assert "restart" not in output  # a clean stop restarts nothing


@asynccontextmanager
async def supervised(
    stack: Stack, tmp_path: Path, **env: Any
) -> AsyncIterator[tuple[subprocess.Popen[bytes], httpx.AsyncClient, Path]]:
    """scripts/supervise.py on this test's namespace; SIGTERM at the end."""
    port = free_port()
    log_path = tmp_path / "supervise.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "supervise.py")],
            env=stack.env(api_port=port, metrics_port=free_port(), **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=10, headers=ADMIN
            ) as c:
                yield proc, c, log_path
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        await asyncio.sleep(0.2)


def worker_pids(supervisor: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == supervisor and b"conveyor_worker.main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


async def test_a_killed_worker_is_restarted_while_the_rest_carry_on(
    stack: Stack, tmp_path: Path
) -> None:
    async with supervised(stack, tmp_path, run_workers=2) as (proc, client, log):
        await wait_ready(client, proc, log)
        ids: list[str] = []
        for i in range(40):  # in flight on both workers when one dies
            resp = await client.post(
                "/v1/jobs",
                json={"type": "sleep", "payload": {"seconds": 0.2}, "priority": 1 + i % 10},
            )
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        pids = worker_pids(proc.pid)
        assert len(pids) == 2, pids
        os.kill(pids[0], signal.SIGKILL)
        for i in range(40):  # submissions keep being accepted meanwhile
            resp = await client.post("/v1/jobs", json={"type": "echo", "payload": {"i": i}})
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])
        deadline = time.monotonic() + 90
        for job_id in ids:
            while (job := (await client.get(f"/v1/jobs/{job_id}")).json())["status"] != "completed":
                assert job["status"] not in ("failed", "cancelled"), job
                assert time.monotonic() < deadline, (job, log.read_text())
                await asyncio.sleep(0.1)
        output = log.read_text()
        assert re.search(
            rf"worker-\d \(pid {pids[0]}\) exited with -9 \(SIGKILL\); restart", output
        )
        assert proc.poll() is None, output
        while len(now := worker_pids(proc.pid)) != 2 or pids[0] in now:
            assert time.monotonic() < deadline, (now, output)
            await asyncio.sleep(0.2)
        assert pids[1] in now  # the survivor was left alone
        while (await client.get("/v1/stats")).json()["queues"]["work"]["consumers"] != 2:
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.2)  # the restarted worker rejoined
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    assert re.search(r"worker-\d restarted \(pid \d+\)", log.read_text())


async def test_a_crash_loop_stops_the_stack_and_names_the_process(
    stack: Stack, tmp_path: Path
) -> None:
    # Only the notifier reads this setting, so only the notifier crashes (at start).
    async with supervised(
        stack,
        tmp_path,
        notify_retry_jitter="5",
        run_restart_backoff_s="0.1",
        run_crash_limit="3",
    ) as (proc, _client, log):
        code = await asyncio.to_thread(proc.wait, 90)
    output = log.read_text()
    assert code == 1, output
    assert "notifier (pid" in output, output
    assert "crash loop; giving up on notifier" in output, output
    assert output.count("notifier restarted") == 2, output
    assert "invalid setting CONVEYOR_NOTIFY_RETRY_JITTER='5'" in output, output
    assert "api stopped" in output, output  # the rest was stopped cleanly
