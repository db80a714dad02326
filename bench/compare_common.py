"""What the two sides of ``bench/compare.py`` share: the run spec and result,
waiting for a drained queue, scraping counters, stopping processes, and
sweeping a run's RabbitMQ objects through the management API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aio_pika
import aiormq
import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchlib import AUTH, percentile

STORE_COMMANDS = "conveyor_store_commands_total"


@dataclass(frozen=True)
class RunSpec:
    jobs: int
    workers: int
    clients: int
    worker_concurrency: int  # Conveyor: async job slots per worker process
    prefetch_multiplier: int  # Celery: --prefetch-multiplier
    confirm_publish: bool  # Celery: wait for the broker's publisher confirm in apply_async
    deadline_s: float
    amqp_url: str
    mongodb_url: str
    rabbit_api: str
    out_dir: Path
    profile_dir: Path | None = None  # py-spy flame graphs of Conveyor's services
    sleep_ms: int = 0  # > 0: Conveyor runs `sleep` jobs of this length (I/O-bound series)
    preload: int = 0  # Conveyor: finished jobs stored before the run (bench/preload.py)


@dataclass
class RunResult:
    system: str
    workers: int
    jobs: int
    accepted: int = 0
    errors: int = 0
    submit_s: float = 0.0
    end_to_end_s: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    # Store commands sent during the run, by command name, summed over the processes
    # counted (None: not measurable); extra_commands: processes reported apart.
    store_commands: dict[str, float] | None = None
    extra_commands: dict[str, float] | None = None
    # CPU ms per job by process group over first submit .. last result (bench/cpu.py).
    cpu_ms: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def submit_rate(self) -> float:
        return self.accepted / self.submit_s if self.submit_s else 0.0

    @property
    def end_to_end_rate(self) -> float:
        return self.accepted / self.end_to_end_s if self.end_to_end_s else 0.0

    def enqueue_ms(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000 if self.latencies else float("nan")

    def store_per_job(self) -> float | None:
        if self.store_commands is None or not self.accepted:
            return None
        return sum(self.store_commands.values()) / self.accepted

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        del out["latencies"]
        per_job = self.store_per_job()
        return out | {
            "submit_rate_per_s": round(self.submit_rate, 1),
            "end_to_end_jobs_per_s": round(self.end_to_end_rate, 1),
            "enqueue_p50_ms": round(self.enqueue_ms(50), 2) if self.latencies else None,
            "enqueue_p99_ms": round(self.enqueue_ms(99), 2) if self.latencies else None,
            "store_round_trips_per_job": None if per_job is None else round(per_job, 3),
        }


def log(tag: str, message: str) -> None:
    print(f"[{tag}] {message}", file=sys.stderr, flush=True)


def with_db(mongodb_url: str, db: str) -> str:
    """``mongodb_url`` with its path (the database) replaced by ``db``."""
    parts = urllib.parse.urlsplit(mongodb_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


def check_alive(procs: Iterable[subprocess.Popen[bytes]], log_path: Path) -> None:
    for p in procs:
        if p.poll() is not None:
            raise RuntimeError(f"{p.args!r} exited with {p.returncode}; see {log_path}")


async def wait_done(
    tag: str,
    amqp_url: str,
    queue: str | None,
    count_done: Callable[[], Awaitable[int]],
    expected: int,
    alive: Callable[[], None],
    poll_s: float = 2.0,
) -> None:
    """Until ``count_done()`` reaches ``expected``. The count (a scan on FerretDB)
    only runs once the broker reports ``queue`` empty of ready messages."""
    async with await aio_pika.connect(amqp_url) as conn:
        while True:
            alive()
            ready = 0
            if queue is not None:
                channel = await conn.channel()
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                    ready = declared.declaration_result.message_count or 0
                finally:
                    with contextlib.suppress(aiormq.exceptions.AMQPError):
                        await channel.close()
            if ready == 0:
                done = await count_done()
                log(tag, f"{done}/{expected} results stored")
                if done >= expected:
                    return
            else:
                log(tag, f"{ready} messages waiting")
            await asyncio.sleep(poll_s)


def counter_by_label(text: str, sample: str, label: str) -> dict[str, float] | None:
    """Sum the samples named ``sample`` in a Prometheus exposition by ``label``;
    None if the exposition does not declare the metric at all."""
    out: dict[str, float] | None = None
    for family in text_string_to_metric_families(text):
        if sample not in (family.name, f"{family.name}_total"):
            continue
        out = out or {}
        for s in family.samples:
            if s.name == sample:
                key = s.labels.get(label, "")
                out[key] = out.get(key, 0.0) + s.value
    return out


async def scrape_store_commands(urls: list[str]) -> dict[str, float] | None:
    """``conveyor_store_commands_total`` by command, summed over ``urls``; None if
    any process does not export it (code older than the metric)."""
    total: dict[str, float] = {}
    async with httpx.AsyncClient(headers=AUTH, timeout=10) as client:
        for url in urls:
            counts = counter_by_label((await client.get(url)).text, STORE_COMMANDS, "command")
            if counts is None:
                return None
            for k, v in counts.items():
                total[k] = total.get(k, 0.0) + v
    return total


def diff_counts(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in sorted(after.items()) if v - before.get(k, 0.0)}


def stop_processes(
    procs: list[subprocess.Popen[bytes]], grace_s: float = 60.0, *, groups: bool = False
) -> None:
    """SIGTERM each (a graceful stop), then SIGKILL what is left; with ``groups``
    (processes started with ``start_new_session``) their whole process groups."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        if groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # e.g. pool children outliving their parent
        elif p.poll() is None:
            p.kill()
        p.wait(timeout=10)


async def sweep_rabbit(api: str, prefix: str) -> list[str]:
    """Delete every queue and exchange of the default vhost named ``prefix`` or
    ``prefix.*`` (management HTTP API); returns what was deleted."""
    deleted: list[str] = []
    parts = urllib.parse.urlsplit(api)
    auth = (parts.username or "guest", parts.password or "guest")
    netloc = f"{parts.hostname or '127.0.0.1'}:{parts.port or 15672}"
    base = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    async with httpx.AsyncClient(base_url=base, auth=auth, timeout=30) as client:
        for kind in ("queues", "exchanges"):
            resp = await client.get(f"/api/{kind}/%2F", params={"columns": "name"})
            resp.raise_for_status()
            for item in resp.json():
                name = item["name"]
                if name == prefix or name.startswith(prefix + "."):
                    quoted = urllib.parse.quote(name, safe="")
                    (await client.delete(f"/api/{kind}/%2F/{quoted}")).raise_for_status()
                    deleted.append(name)
    return deleted
