"""What one delivery attempt came to, and when (if ever) the next one runs."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from conveyor_kernel.notifications import Delivery, DeliveryAttempt, DeliveryStatus


@dataclass(frozen=True)
class AttemptResult:
    """The single taxonomy every channel reports in: delivered, retryable or permanent."""

    delivered: bool
    retryable: bool = False
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    gone: bool = False  # HTTP 410: the receiver retired the endpoint

    @classmethod
    def ok(cls, status_code: int | None = None) -> AttemptResult:
        return cls(delivered=True, status_code=status_code)

    @classmethod
    def retry(
        cls, error: str, status_code: int | None = None, retry_after_s: float | None = None
    ) -> AttemptResult:
        return cls(False, True, status_code, error, retry_after_s)

    @classmethod
    def permanent(cls, error: str, status_code: int | None = None) -> AttemptResult:
        return cls(False, False, status_code, error)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    schedule_s: tuple[float, ...]
    jitter: float
    retry_after_max_s: float

    @property
    def max_attempts(self) -> int:
        return len(self.schedule_s) + 1

    def delay_s(self, attempt: int, result: AttemptResult, rand: float) -> float:
        """Wait after failed ``attempt`` (1-based); ``rand`` uniform in [0, 1)."""
        delay = self.schedule_s[attempt - 1] * (1 + self.jitter * rand)
        if result.retry_after_s is not None:
            delay = max(delay, min(result.retry_after_s, self.retry_after_max_s))
        return delay


def record(
    delivery: Delivery,
    result: AttemptResult,
    *,
    started: datetime,
    finished: datetime,
    latency_ms: float,
    policy: RetryPolicy,
    rand: float,
) -> Delivery:
    """``delivery`` with this attempt appended and its new status (a retry waits
    from ``finished``, so a slow failing receiver still gets the full delay)."""
    number = delivery.next_attempt
    next_at: datetime | None = None
    error = result.error
    if result.delivered:
        status = DeliveryStatus.DELIVERED
    elif result.retryable and number < policy.max_attempts:
        status = DeliveryStatus.RETRYING
        next_at = finished + timedelta(seconds=policy.delay_s(number, result, rand))
    else:
        status = DeliveryStatus.FAILED
        if result.retryable:
            error = f"{error} (gave up after {number} attempts)"
    attempt = DeliveryAttempt(
        number=number,
        at=started,
        latency_ms=round(latency_ms, 1),
        status_code=result.status_code,
        error=result.error,
        outcome=status,
        next_attempt_at=next_at,
    )
    return delivery.model_copy(
        update={
            "attempts": [*delivery.attempts, attempt],
            "status": status,
            "next_attempt": number + 1 if status is DeliveryStatus.RETRYING else number,
            "next_attempt_at": next_at,
            "error": None if result.delivered else error,
        }
    )
