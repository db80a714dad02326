"""Cron arithmetic without servers: validation, DST, catch-up."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from conveyor_api.scheduler import to_fire
from conveyor_api.schedules import Schedule, ScheduleIn, check_cron, fire_times, next_fire
from conveyor_kernel.model import JobSubmission


def test_cron_expressions_and_aliases() -> None:
    assert check_cron("*/5  *  * * *") == "*/5 * * * *"
    assert check_cron("@Hourly") == "@hourly"
    for bad in ("* * * *", "0 0 * * * *", "61 * * * *", "every minute", "@often"):
        with pytest.raises(ValueError, match="cron"):
            check_cron(bad)


def test_a_scheduled_job_may_not_carry_its_own_time() -> None:
    with pytest.raises(ValueError, match="fire time"):
        ScheduleIn(name="x", cron="@daily", job=JobSubmission(type="echo", delay_s=5))
    with pytest.raises(ValueError, match="time zone"):
        ScheduleIn(name="x", cron="@daily", timezone="Mars/Olympus", job=JobSubmission(type="echo"))


def test_dst_fall_back_fires_every_real_hour() -> None:
    # 2026-10-25, Europe/Berlin: 03:00 CEST becomes 02:00 CET, so the day has 25 hours.
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # local midnight (CEST)
    end = datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # next local midnight (CET)
    fires = fire_times("0 * * * *", "Europe/Berlin", start, end)
    assert len(fires) == 25
    assert {b - a for a, b in itertools.pairwise(fires)} == {timedelta(hours=1)}


def test_dst_spring_forward_fires_a_missing_time_once() -> None:
    # 2026-03-29, Europe/Berlin: 02:00-03:00 does not exist; 02:30 fires at 03:00 CEST.
    start = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    fires = fire_times("30 2 * * *", "Europe/Berlin", start, start + timedelta(days=3))
    assert fires == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST: the skipped hour's run
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),  # 02:30 CEST
    ]


def schedule(catch_up: str, next_run_at: datetime, cron: str = "* * * * *") -> Schedule:
    now = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)
    return Schedule.model_validate(
        {
            "_id": "s1",
            "name": "every minute",
            "cron": cron,
            "timezone": "UTC",
            "job": {"type": "echo"},
            "enabled": True,
            "catch_up": catch_up,
            "next_run_at": next_run_at,
            "created_at": now,
            "updated_at": now,
        }
    )


def test_catch_up_after_downtime() -> None:
    now = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)
    on_time = schedule("none", now - timedelta(seconds=30))
    assert to_fire(on_time, now) == [now - timedelta(seconds=30)]
    down = now - timedelta(minutes=10, seconds=30)  # 12:50 .. 12:00 missed: 11 fire times
    assert to_fire(schedule("none", down), now) == [datetime(2026, 11, 29, 12, 0, tzinfo=UTC)]
    # Every 10 minutes, nothing ran from 11:20 to 12:05:30: all five fire times missed.
    late = datetime(2026, 11, 29, 12, 5, 30, tzinfo=UTC)
    ten = "*/10 * * * *"
    since = datetime(2026, 11, 29, 11, 20, tzinfo=UTC)
    assert to_fire(schedule("none", since, ten), late) == []
    assert to_fire(schedule("latest", since, ten), late) == [
        datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    ]
    assert next_fire("* * * * *", "UTC", late) == datetime(2026, 11, 29, 12, 6, tzinfo=UTC)
