"""``/v1/schedules``: cron schedules that submit a job at every fire time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from conveyor_api.auth import Read, Write
from conveyor_api.enqueue import check_submissions
from conveyor_api.problems import ApiError
from conveyor_api.schedules import (
    Schedule,
    ScheduleIn,
    ScheduleOut,
    SchedulePatch,
    next_fire,
)
from conveyor_api.state import AppState, State
from conveyor_kernel.model import utcnow

router = APIRouter(prefix="/v1", tags=["schedules"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such schedule"},
    422: {"description": "Invalid cron expression, time zone or job"},
}


def _not_found(schedule_id: str) -> ApiError:
    return ApiError(404, "schedule_not_found", f"no schedule with id {schedule_id!r}")


async def _get(state: AppState, schedule_id: str) -> Schedule:
    schedule = await state.schedules.get(schedule_id)
    if schedule is None:
        raise _not_found(schedule_id)
    return schedule


@router.post(
    "/schedules",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "Too many schedules"}, **ERRORS},
    dependencies=[Write],
)
async def create_schedule(body: ScheduleIn, state: State) -> ScheduleOut:
    """A job (``job``, a submission) at every fire time of ``cron`` in ``timezone``.

    Exactly one job per fire time, whatever the number of API replicas; its jobs
    carry ``schedule_id`` (list them with ``GET /v1/jobs?schedule_id=``).
    """
    check_submissions(state, [body.job])
    if await state.schedules.count() >= state.settings.max_schedules:
        raise ApiError(
            409, "too_many_schedules", f"at most {state.settings.max_schedules} schedules"
        )
    return ScheduleOut.of(await state.schedules.create(body))


@router.get("/schedules", dependencies=[Read])
async def list_schedules(state: State) -> list[ScheduleOut]:
    return [
        ScheduleOut.of(s) for s in await state.schedules.every(limit=state.settings.max_schedules)
    ]


@router.get(
    "/schedules/{schedule_id}",
    responses=ERRORS,
    dependencies=[Read],
)
async def get_schedule(schedule_id: str, state: State) -> ScheduleOut:
    return ScheduleOut.of(await _get(state, schedule_id))


@router.patch(
    "/schedules/{schedule_id}",
    responses=ERRORS,
    dependencies=[Write],
)
async def update_schedule(schedule_id: str, body: SchedulePatch, state: State) -> ScheduleOut:
    """Change any field; the next fire time is recomputed from now."""
    current = await _get(state, schedule_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if body.job is not None:
        check_submissions(state, [body.job])
        changes["job"] = body.job.model_dump(mode="json", exclude_none=True)
    merged = current.model_copy(update={k: v for k, v in changes.items() if k != "job"})
    changes["next_run_at"] = (
        next_fire(merged.cron, merged.timezone, utcnow()) if merged.enabled else None
    )
    updated = await state.schedules.update(schedule_id, changes)
    if updated is None:
        raise _not_found(schedule_id)
    return ScheduleOut.of(updated)


@router.delete(
    "/schedules/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=ERRORS,
    dependencies=[Write],
)
async def delete_schedule(schedule_id: str, state: State) -> Response:
    """Stop firing (jobs it created stay)."""
    if not await state.schedules.delete(schedule_id):
        raise _not_found(schedule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
