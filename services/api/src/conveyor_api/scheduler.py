"""Firing schedules: exactly one job per fire time, from any number of API
replicas, with no leader.

Every replica looks for due schedules each ``CONVEYOR_SCHEDULER_INTERVAL_S``.
A fire time becomes a job through the ``Idempotency-Key``
``schedule:<id>:<fire time>`` (:func:`conveyor_api.enqueue.enqueue_once`): the
claim is a unique insert, so of two replicas firing the same time one creates
the job and the other gets it back (or sees it in progress and tries again next
round); a replica that dies mid-way is taken over after the key's lease with
the same planned job id. Only when every due fire time has its job does the
schedule move on (``next_run_at``), so none is lost either.

Fire times more than ``GRACE_S`` late were missed (no API ran): ``catch_up``
``none`` skips them, ``latest`` runs the most recent one once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from conveyor_api.enqueue import enqueue_once
from conveyor_api.problems import ApiError
from conveyor_api.schedules import GRACE_S, LastRun, Schedule, fire_times, next_fire
from conveyor_api.state import AppState
from conveyor_kernel.errors import BrokerUnavailableError, StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import utcnow

log = get_logger(__name__)


def to_fire(schedule: Schedule, now: datetime) -> list[datetime]:
    """The fire times of ``schedule`` to run now (per ``catch_up``)."""
    first = schedule.next_run_at
    assert first is not None
    if first > now:
        return []
    # croniter steps strictly after ``first``, in order: no duplicate, nothing past ``now``.
    due = [first, *fire_times(schedule.cron, schedule.timezone, first, now)]
    on_time = [f for f in due if (now - f).total_seconds() <= GRACE_S]
    if on_time or schedule.catch_up == "none":
        return on_time
    return due[-1:]


async def fire(state: AppState, schedule: Schedule, at: datetime) -> LastRun | None:
    """One job for fire time ``at``; ``None`` if another replica is still on it."""
    key = f"schedule:{schedule.id}:{at.strftime('%Y%m%dT%H%M%SZ')}"
    body = {
        "schedule": schedule.id,
        "fire": at.isoformat(),
        "job": schedule.job.model_dump(mode="json"),
    }
    try:
        jobs, replayed = await enqueue_once(
            state, [schedule.job], key, body, schedule_id=schedule.id
        )
    except ApiError as exc:
        if exc.code == "idempotency_key_in_progress":
            return None
        log.warning("scheduled job refused", schedule_id=schedule.id, error=exc.message)
        return LastRun(fire_time=at, at=utcnow(), error=f"{exc.code}: {exc.message}")
    if not replayed:
        log.info(
            "schedule fired", schedule_id=schedule.id, fire_time=at.isoformat(), job_id=jobs[0].id
        )
    return LastRun(fire_time=at, at=utcnow(), job_id=jobs[0].id)


async def tick(state: AppState, now: datetime) -> int:
    """Fire what is due; the number of fire times handled."""
    handled = 0
    for schedule in await state.schedules.due(now):
        last: LastRun | None = None
        for at in to_fire(schedule, now):
            run = await fire(state, schedule, at)
            if run is None:
                break  # another replica is on it: advance once every fire time has a job
            last, handled = run, handled + 1
        else:
            await state.schedules.advance(
                schedule, next_fire(schedule.cron, schedule.timezone, now), last
            )
    return handled


async def run_scheduler(state: AppState, interval_s: float) -> None:
    while True:
        try:
            await tick(state, utcnow())
        except (StoreUnavailableError, BrokerUnavailableError) as exc:
            log.warning("scheduler round failed; will retry", error=str(exc))
        except Exception:
            log.exception("scheduler round crashed; will retry")
        await asyncio.sleep(interval_s)
