"""Real Conveyor processes for integration tests: the API and workers as subprocesses."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.infra import Infra, free_port

TERMINAL = {"completed", "failed", "cancelled"}
ADMIN_KEY = "test-admin-" + secrets.token_hex(24)  # CONVEYOR_ADMIN_KEY of every test stack
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SECRETS_KEY = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()  # Fernet key


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int | None = None  # workers and notifiers: /metrics, /healthz, /readyz

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None


async def wait_ready(
    client: httpx.AsyncClient,
    timeout: float = 60,
    failed: Callable[[], str | None] = lambda: None,
) -> None:
    """Until ``GET /readyz`` answers 200; ``failed`` says why to stop waiting early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reason = failed()
        if reason is not None:
            raise AssertionError(reason)
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"the API was not ready within {timeout:g} s")


@dataclass
class Stack:
    infra: Infra
    namespace: str
    db_name: str
    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    api_url: str | None = None
    _client: httpx.AsyncClient | None = None

    def env(self, **overrides: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env |= {
            "CONVEYOR_AMQP_URL": self.infra.amqp_url,
            "CONVEYOR_MONGODB_URL": self.infra.mongodb_url,
            "CONVEYOR_MONGODB_DB": self.db_name,
            "CONVEYOR_NAMESPACE": self.namespace,
            "CONVEYOR_LOG_JSON": "true",
            "CONVEYOR_LOG_LEVEL": "DEBUG",
            "CONVEYOR_OUTBOX_GRACE_S": "3",
            "CONVEYOR_ADMIN_KEY": ADMIN_KEY,
            "CONVEYOR_SECRETS_KEY": SECRETS_KEY,
            "CONVEYOR_RATE_LIMIT_PER_S": "0",  # unlimited unless a test sets a limit
            "CONVEYOR_COUNTS_FLUSH_S": "0.2",  # /v1/stats shows workers' changes soon
            "PYTHONUNBUFFERED": "1",
        }
        env |= {f"CONVEYOR_{k.upper()}": str(v) for k, v in overrides.items()}
        return env

    def _spawn(self, name: str, module: str, env: dict[str, str]) -> Proc:
        log_path = self.workdir / f"{name}-{len(self.procs)}.log"
        with log_path.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", module], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    async def start_api(self, **overrides: Any) -> httpx.AsyncClient:
        port = free_port()
        proc = self._spawn("api", "conveyor_api.main", self.env(api_port=port, **overrides))
        self.api_url = f"http://127.0.0.1:{port}"
        self._client = httpx.AsyncClient(base_url=self.api_url, timeout=30, headers=ADMIN)

        def exited() -> str | None:
            return None if proc.alive() else f"api exited:\n{proc.log()}"

        await wait_ready(self._client, 60, exited)
        return self._client

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "start_api() first"
        return self._client

    async def start_worker(self, **overrides: Any) -> Proc:
        overrides.setdefault("worker_id", f"w{len(self.procs)}")
        overrides.setdefault("metrics_port", free_port())
        proc = self._spawn("worker", "conveyor_worker.main", self.env(**overrides))
        proc.metrics_port = int(overrides["metrics_port"])
        await self.wait_log(proc, '"worker ready"')
        return proc

    async def start_notifier(self, **overrides: Any) -> Proc:
        overrides.setdefault("metrics_port", free_port())
        proc = self._spawn("notifier", "conveyor_notifier.main", self.env(**overrides))
        proc.metrics_port = int(overrides["metrics_port"])
        await self.wait_log(proc, '"notifier ready"')
        return proc

    async def deliveries(
        self, job_id: str, count: int = 1, final: bool = True, timeout: float = 60
    ) -> list[dict[str, Any]]:
        """``GET /v1/jobs/{id}/deliveries`` once it has ``count`` deliveries (all final)."""
        deadline = time.monotonic() + timeout
        while True:
            resp = await self.client.get(f"/v1/jobs/{job_id}/deliveries")
            assert resp.status_code == 200, resp.text
            items: list[dict[str, Any]] = resp.json()
            done = [d for d in items if d["status"] in {"delivered", "failed"} or not final]
            if len(items) >= count and len(done) == len(items):
                return items
            assert time.monotonic() < deadline, f"deliveries not settled: {items}"
            await asyncio.sleep(0.1)

    async def wait_log(self, proc: Proc, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in proc.log():
            assert proc.alive() or needle in proc.log(), f"{proc.name} exited:\n{proc.log()}"
            assert time.monotonic() < deadline, f"{needle!r} not logged:\n{proc.log()}"
            await asyncio.sleep(0.1)

    async def submit(self, type_: str = "echo", **body: Any) -> dict[str, Any]:
        resp = await self.client.post("/v1/jobs", json={"type": type_, **body})
        assert resp.status_code == 202, resp.text
        job: dict[str, Any] = resp.json()
        return job

    async def wait_job(
        self, job_id: str, statuses: set[str] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            resp = await self.client.get(f"/v1/jobs/{job_id}")
            assert resp.status_code == 200, resp.text
            job: dict[str, Any] = resp.json()
            if job["status"] in statuses:
                return job
            assert time.monotonic() < deadline, f"job stuck in {job['status']}: {job}"
            await asyncio.sleep(0.1)

    async def stats_until(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        """``GET /v1/stats`` until ``done`` holds: other processes' count changes
        reach the API within CONVEYOR_COUNTS_FLUSH_S."""
        deadline = time.monotonic() + timeout
        while True:
            resp = await self.client.get("/v1/stats")
            assert resp.status_code == 200, resp.text
            stats: dict[str, Any] = resp.json()
            if done(stats):
                return stats
            assert time.monotonic() < deadline, f"stats never got there: {stats}"
            await asyncio.sleep(0.1)

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if proc.alive():
            proc.popen.send_signal(sig)
        return proc.popen.wait(timeout=timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        for proc in self.procs:
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()

    def logs(self) -> str:
        return "\n".join(
            f"===== {p.name} ({p.log_path.name})\n{p.log()[-6000:]}" for p in self.procs
        )


async def next_message(amqp: Any, queue_name: str, timeout: float = 5) -> Any:
    """The next message in ``queue_name`` (waits up to ``timeout``)."""
    channel = await amqp.channel()
    queue = await channel.get_queue(queue_name)
    deadline = time.monotonic() + timeout
    while (message := await queue.get(no_ack=True, fail=False)) is None:
        assert time.monotonic() < deadline, f"nothing arrived in {queue_name}"
        await asyncio.sleep(0.05)
    return message


async def next_parked(amqp: Any, namespace: str, timeout: float = 5) -> Any:
    """The next message in the namespace's parking-lot queue (waits up to ``timeout``)."""
    from conveyor_kernel.topology import build_topology

    return await next_message(amqp, build_topology(namespace).parking_lot_queue, timeout)
