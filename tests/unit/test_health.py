"""When a failing webhook subscription is disabled, and what is written on the way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor_kernel.notifications import Delivery, DeliveryStatus, Subscription
from conveyor_notifier.health import HealthPolicy, health_change
from conveyor_notifier.outcome import AttemptResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = HealthPolicy(max_failed_deliveries=3, max_failing_s=5 * 86400)
FAIL = AttemptResult.retry("503 Service Unavailable", 503)


def sub(**fields: object) -> Subscription:
    return Subscription.model_validate(
        {
            "_id": "wh_1",
            "url": "https://example.com/hook",
            "events": ["job.completed"],
            "secret": "whsec_" + "A" * 44,
            "created_at": T0,
            "updated_at": T0,
            **fields,
        }
    )


def delivery(status: DeliveryStatus) -> Delivery:
    return Delivery.model_construct(status=status)


def test_a_success_on_a_healthy_subscription_writes_nothing() -> None:
    fields, disabled = health_change(
        sub(), delivery(DeliveryStatus.DELIVERED), AttemptResult.ok(200), T0, POLICY
    )
    assert (fields, disabled) == ({}, None)


def test_a_success_after_failures_resets_the_counters() -> None:
    failing = sub(failed_deliveries=2, failing_since=T0)
    fields, disabled = health_change(
        failing, delivery(DeliveryStatus.DELIVERED), AttemptResult.ok(200), T0, POLICY
    )
    assert fields == {"failed_deliveries": 0, "failing_since": None}
    assert disabled is None


def test_the_first_failed_attempt_marks_failing_since_only() -> None:
    fields, _ = health_change(sub(), delivery(DeliveryStatus.RETRYING), FAIL, T0, POLICY)
    assert fields == {"failing_since": T0}
    later, _ = health_change(
        sub(failing_since=T0), delivery(DeliveryStatus.RETRYING), FAIL, T0, POLICY
    )
    assert later == {}  # nothing new to write


def test_the_nth_failed_delivery_disables() -> None:
    fields, disabled = health_change(
        sub(failed_deliveries=1, failing_since=T0),
        delivery(DeliveryStatus.FAILED),
        FAIL,
        T0,
        POLICY,
    )
    assert fields == {"failed_deliveries": 2}
    assert disabled is None
    fields, disabled = health_change(
        sub(failed_deliveries=2, failing_since=T0),
        delivery(DeliveryStatus.FAILED),
        FAIL,
        T0,
        POLICY,
    )
    assert disabled == "failing"
    assert fields["enabled"] is False
    assert fields["failed_deliveries"] == 3
    assert fields["disabled_reason"].startswith("3 deliveries in a row failed after every retry")
    assert "503 Service Unavailable" in fields["disabled_reason"]


def test_five_days_of_only_failures_disables_even_with_few_deliveries() -> None:
    failing = sub(failing_since=T0)
    early = T0 + timedelta(days=4, hours=23)
    assert health_change(failing, delivery(DeliveryStatus.RETRYING), FAIL, early, POLICY)[1] is None
    late = T0 + timedelta(days=5)
    fields, disabled = health_change(failing, delivery(DeliveryStatus.RETRYING), FAIL, late, POLICY)
    assert disabled == "failing"
    assert "every attempt failed for 5.0 days" in fields["disabled_reason"]


def test_zero_turns_a_criterion_off() -> None:
    never = HealthPolicy(max_failed_deliveries=0, max_failing_s=0)
    ancient = sub(failed_deliveries=10_000, failing_since=T0 - timedelta(days=400))
    fields, disabled = health_change(ancient, delivery(DeliveryStatus.FAILED), FAIL, T0, never)
    assert disabled is None
    assert fields == {"failed_deliveries": 10_001}


def test_410_gone_disables_at_once() -> None:
    gone = AttemptResult(delivered=False, status_code=410, error="410 Gone", gone=True)
    fields, disabled = health_change(sub(), delivery(DeliveryStatus.FAILED), gone, T0, POLICY)
    assert disabled == "gone"
    assert fields == {"enabled": False, "disabled_reason": f"410 Gone at {T0.isoformat()}"}
