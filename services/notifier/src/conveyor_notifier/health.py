"""Subscription health: a receiver that keeps failing is disabled, as 410 Gone disables one.

Following Svix's and Stripe's practice, a subscription stops costing attempts once
``notify_disable_after_failed_deliveries`` deliveries in a row failed after every
retry (50), or once every attempt has failed for ``notify_disable_after_failing_s``
(5 days, for receivers that get few events). It gets ``enabled: false`` and a
``disabled_reason``; ``PATCH /v1/webhooks/{id}`` with ``enabled: true`` re-enables
it and resets the counters.

The store is written only when something changes: the first failed attempt after
a success (``failing_since``), a delivery that failed for good
(``failed_deliveries``), the first success after failures (both reset), and the
disable. Concurrent deliveries may each count from the same stored value, so the
count is a lower bound; the age criterion does not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor_kernel.logs import get_logger
from conveyor_kernel.notifications import (
    Delivery,
    DeliveryStatus,
    Subscription,
    SubscriptionStore,
)
from conveyor_notifier.metrics import NotifierMetrics
from conveyor_notifier.outcome import AttemptResult

log = get_logger(__name__)


@dataclass(frozen=True)
class HealthPolicy:
    max_failed_deliveries: int  # 0: never on this count
    max_failing_s: float  # 0: never on this age


def health_change(
    sub: Subscription,
    stored: Delivery,
    result: AttemptResult,
    started: datetime,
    policy: HealthPolicy,
) -> tuple[dict[str, Any], str | None]:
    """The fields to write after an attempt (empty: nothing changed), and the
    metric reason if they disable the subscription."""
    if result.gone:
        return {"enabled": False, "disabled_reason": f"410 Gone at {started.isoformat()}"}, "gone"
    if result.delivered:
        if sub.failed_deliveries or sub.failing_since is not None:
            return {"failed_deliveries": 0, "failing_since": None}, None
        return {}, None
    fields: dict[str, Any] = {}
    failing_since = sub.failing_since or started
    if sub.failing_since is None:
        fields["failing_since"] = started
    failed = sub.failed_deliveries
    if stored.status is DeliveryStatus.FAILED:
        failed += 1
        fields["failed_deliveries"] = failed
    reason = None
    failing_s = (started - failing_since).total_seconds()
    if policy.max_failed_deliveries and failed >= policy.max_failed_deliveries:
        reason = f"{failed} deliveries in a row failed after every retry"
    elif policy.max_failing_s and failing_s >= policy.max_failing_s:
        reason = f"every attempt failed for {failing_s / 86400:.1f} days"
    if reason is None:
        return fields, None
    detail = f"{reason} (since {failing_since.isoformat()}; last error: {result.error})"
    return fields | {"enabled": False, "disabled_reason": detail[:1000]}, "failing"


class SubscriptionHealth:
    def __init__(
        self, subscriptions: SubscriptionStore, policy: HealthPolicy, metrics: NotifierMetrics
    ) -> None:
        self._subscriptions = subscriptions
        self._policy = policy
        self._metrics = metrics

    async def observe(
        self, sub: Subscription, stored: Delivery, result: AttemptResult, started: datetime
    ) -> None:
        """Record the attempt's outcome on ``sub`` (as read before the attempt)."""
        fields, disabled = health_change(sub, stored, result, started, self._policy)
        if not fields:
            return
        await self._subscriptions.update(sub.id, fields)
        if disabled is not None:
            self._metrics.disabled.labels(disabled).inc()
            log.warning(
                "subscription disabled",
                subscription=sub.id,
                reason=fields["disabled_reason"],
            )
