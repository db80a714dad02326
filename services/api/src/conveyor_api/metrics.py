"""API Prometheus metrics, in a registry of the app's own (no import-time globals),
and the queue statistics this service alone exports."""

from __future__ import annotations

import asyncio
import time

from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor_kernel import __version__
from conveyor_kernel.broker import BROKER_ERRORS, queue_stats
from conveyor_kernel.logs import get_logger
from conveyor_kernel.metrics import DURATION_BUCKETS, new_registry
from conveyor_kernel.topology import Topology

log = get_logger(__name__)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry: CollectorRegistry = new_registry("api", __version__)
        self.requests = Counter(
            "conveyor_api_requests_total",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "conveyor_api_request_duration_seconds",
            "HTTP request latency by route and method",
            ["route", "method"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.submitted = Counter(
            "conveyor_api_jobs_submitted_total",
            "Jobs accepted (202) by type and priority",
            ["type", "priority"],
            registry=self.registry,
        )
        self.stream_clients = Gauge(
            "conveyor_api_stream_clients",
            "Clients connected to /v1/events/stream",
            registry=self.registry,
        )
        self.stream_dropped = Counter(
            "conveyor_api_stream_dropped_total",
            "Event stream clients dropped for reading too slowly",
            registry=self.registry,
        )
        # Read from RabbitMQ by this service only (workers and notifiers do not), so
        # sums over scrape targets do not double count; with several API replicas
        # aggregate with max by (queue).
        self.queue_messages = Gauge(
            "conveyor_queue_messages",
            "Messages ready in each Conveyor queue (work, delay tiers, parking lots, notifier)",
            ["queue"],
            registry=self.registry,
        )
        self.queue_consumers = Gauge(
            "conveyor_queue_consumers",
            "Consumers attached to each Conveyor queue",
            ["queue"],
            registry=self.registry,
        )
        self.queue_stats_ok = Gauge(
            "conveyor_queue_stats_up",
            "1 if the last read of queue statistics from RabbitMQ succeeded",
            registry=self.registry,
        )


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope)
            method = scope.get("method", "GET")
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    """The matched route's path template (Starlette records the route in the scope)."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"


async def watch_queues(
    connection: AbstractRobustConnection, topology: Topology, metrics: ApiMetrics, interval_s: float
) -> None:
    """Refresh the queue gauges every ``interval_s`` until cancelled."""
    channel: AbstractChannel | None = None
    while True:
        try:
            # Bounded: during an outage the robust connection waits for the broker,
            # and the gauges must say "stale" (up = 0) rather than freeze.
            async with asyncio.timeout(max(interval_s, 2.0)):
                if channel is None or channel.is_closed:
                    channel = await connection.channel()
                for queue in topology.queues:
                    stats = await queue_stats(channel, queue.name)
                    metrics.queue_messages.labels(queue.name).set(stats.messages)
                    metrics.queue_consumers.labels(queue.name).set(stats.consumers)
            metrics.queue_stats_ok.set(1)
        except BROKER_ERRORS as exc:
            metrics.queue_stats_ok.set(0)
            log.warning("queue statistics unavailable", error=f"{type(exc).__name__}: {exc}")
            channel = None
        await asyncio.sleep(interval_s)
