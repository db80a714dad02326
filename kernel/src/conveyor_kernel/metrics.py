"""Metric helpers shared by the services: one registry per process, standard buckets.

Every metric lives in a registry the process creates in ``main()`` (nothing at
import time), so tests can run several in one interpreter. Names follow the
Prometheus conventions: ``conveyor_`` prefix, base units (``_seconds``),
``_total`` on counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

# Seconds: from a few milliseconds (no-op jobs, webhooks on a LAN) to an hour.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
# Waiting in a queue: sub-second to a day (schedules are separate: this is past due).
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


def new_registry(service: str, version: str) -> CollectorRegistry:
    """A fresh registry with ``conveyor_build_info{service, version}`` = 1."""
    registry = CollectorRegistry()
    info = Gauge(
        "conveyor_build_info",
        "Always 1; labels say which service and version this process runs",
        ["service", "version"],
        registry=registry,
    )
    info.labels(service, version).set(1)
    return registry


class StoreCommandCounter(CommandListener):
    """pymongo command monitoring: ``conveyor_store_commands_total{command}``.

    Counts every command the process sends to MongoDB (one per round trip), so
    store cost per job can be read from ``/metrics`` and compared across versions.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._total = Counter(
            "conveyor_store_commands_total",
            "MongoDB commands sent (round trips), by command name",
            ["command"],
            registry=registry,
        )
        self._failed = Counter(
            "conveyor_store_command_failures_total",
            "MongoDB commands that failed, by command name",
            ["command"],
            registry=registry,
        )

    def started(self, event: CommandStartedEvent) -> None:
        self._total.labels(event.command_name).inc()

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        self._failed.labels(event.command_name).inc()
