"""Notifier metrics (served on ``CONVEYOR_METRICS_PORT`` by :mod:`conveyor_kernel.ops`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from conveyor_kernel import __version__
from conveyor_kernel.metrics import DURATION_BUCKETS, new_registry
from conveyor_kernel.notifications import Delivery, DeliveryStatus

ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 11, 16)


class NotifierMetrics:
    def __init__(self) -> None:
        self.registry: CollectorRegistry = new_registry("notifier", __version__)
        r = self.registry
        self.events = Counter(
            "conveyor_notifier_events_total",
            "Job events fanned out, by event type",
            ["event_type"],
            registry=r,
        )
        self.deliveries = Counter(
            "conveyor_notifier_deliveries_total",
            "Delivery attempts by channel and outcome (delivered, retrying, failed)",
            ["channel", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "conveyor_notifier_delivery_duration_seconds",
            "Time one delivery attempt took (HTTP request or SMTP/API send)",
            ["channel"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.attempts_until_success = Histogram(
            "conveyor_notifier_attempts_until_success",
            "Attempts a delivery needed before it succeeded",
            ["channel"],
            buckets=ATTEMPT_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "conveyor_notifier_in_flight",
            "Event and delivery messages being handled by this process",
            registry=r,
        )
        self.disabled = Counter(
            "conveyor_notifier_subscriptions_disabled_total",
            "Subscriptions disabled: the receiver answered 410 Gone (gone), or kept failing "
            "(failing)",
            ["reason"],
            registry=r,
        )

    def attempt(self, stored: Delivery, latency_s: float) -> None:
        channel = stored.channel.value
        self.deliveries.labels(channel, stored.status.value).inc()
        self.latency.labels(channel).observe(latency_s)
        if stored.status is DeliveryStatus.DELIVERED:
            self.attempts_until_success.labels(channel).observe(len(stored.attempts))
