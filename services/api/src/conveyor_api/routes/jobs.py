"""``/v1/jobs``: submit, inspect, list, retry and delete jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse

from conveyor_api.auth import Admin, Read, Write
from conveyor_api.enqueue import IdempotencyKey, enqueue, enqueue_once
from conveyor_api.problems import ApiError
from conveyor_api.schemas import JobOut, JobPage, JobTypeOut
from conveyor_api.state import AppState, State
from conveyor_kernel.errors import BrokerUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.machine import cancel, request_cancel
from conveyor_kernel.model import (
    CANCELLABLE_STATUSES,
    JOB_TYPE_PATTERN,
    Job,
    JobStatus,
    JobSubmission,
    utcnow,
)
from conveyor_kernel.store import DeleteResult

router = APIRouter(prefix="/v1", tags=["jobs"])
CANCEL_ROUNDS = 10
log = get_logger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such job"},
    409: {"description": "The job is not in a state that allows this"},
    422: {"description": "Invalid body or unknown job type"},
    503: {"description": "RabbitMQ or MongoDB unavailable; nothing was accepted"},
}


async def _get(state: AppState, job_id: str) -> Job:
    job = await state.store.get(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id!r}", job_id=job_id)
    return job


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={413: {"description": "Body over the size limit"}, **ERRORS},
    dependencies=[Write],
)
async def submit_job(
    body: JobSubmission, state: State, idempotency_key: IdempotencyKey = None
) -> Response:
    """Accept a job: 202 means it is stored and the broker confirmed its message.

    With an ``Idempotency-Key`` header, repeating the request returns the original
    job with ``200``; the same key with a different body is a ``409``.
    """
    jobs, replayed = await enqueue_once(
        state, [body], idempotency_key, body.model_dump(mode="json")
    )
    return JSONResponse(
        JobOut.of(jobs[0]).model_dump(mode="json"),
        status_code=status.HTTP_200_OK if replayed else status.HTTP_202_ACCEPTED,
    )


@router.get("/jobs/{job_id}", responses=ERRORS, dependencies=[Read])
async def get_job(job_id: str, state: State) -> JobOut:
    return JobOut.of(await _get(state, job_id))


@router.get("/jobs", dependencies=[Read])
async def list_jobs(
    state: State,
    *,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    type_: Annotated[str | None, Query(alias="type", pattern=JOB_TYPE_PATTERN)] = None,
    schedule_id: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9a-f]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for the next page: a page
    may hold fewer than ``limit`` jobs (even none) and still have a ``next_cursor``
    when the store's walk ran out of time; the list ends where ``next_cursor`` is null."""
    page = await state.store.list(
        status=status_,
        job_type=type_,
        schedule_id=schedule_id,
        limit=limit,
        cursor=cursor,
        counts=state.stats.latest,
    )
    return JobPage(items=[JobOut.of(j) for j in page.jobs], next_cursor=page.next_cursor)


@router.post(
    "/jobs/{job_id}/retry",
    status_code=status.HTTP_201_CREATED,
    responses=ERRORS,
    dependencies=[Write],
)
async def retry_job(job_id: str, state: State) -> JobOut:
    """Clone a finished job into a new one (``retry_of`` points back); the original stays."""
    original = await _get(state, job_id)
    if not original.status.finished:
        raise ApiError(
            409,
            "job_not_finished",
            f"job {job_id} is {original.status.value}; only finished jobs can be retried",
            job_status=original.status.value,
        )
    return JobOut.of((await enqueue(state, [original.to_submission()], retry_of=original.id))[0])


@router.delete(
    "/jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS, dependencies=[Admin]
)
async def delete_job(job_id: str, state: State) -> Response:
    """Remove a finished job; a queued or running one is refused with 409."""
    result = await state.store.delete_finished(job_id)
    if result is DeleteResult.NOT_FOUND:
        raise ApiError(404, "job_not_found", f"no job with id {job_id!r}", job_id=job_id)
    if result is DeleteResult.NOT_FINISHED:
        raise ApiError(
            409, "job_not_finished", f"job {job_id} is not finished; cancel it or wait for it"
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/job-types", dependencies=[Read])
async def job_types(state: State) -> list[JobTypeOut]:
    """The job types this deployment knows (built-ins and plugins)."""
    return [JobTypeOut(name=s.name, description=s.description) for s in state.registry.specs()]


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses={
        202: {"description": "Running: cancellation signalled; it ends cancelled"},
        **ERRORS,
    },
    dependencies=[Write],
)
async def cancel_job(job_id: str, state: State) -> Response:
    """Cancel a job. Scheduled, queued or retrying: ``cancelled`` now (its message
    is skipped when it arrives). Running: the worker is told to stop it (``202``),
    and it ends ``cancelled``. Finished: ``409``."""
    for _ in range(CANCEL_ROUNDS):
        job = await _get(state, job_id)
        if job.status.finished:
            raise ApiError(
                409,
                "job_finished",
                f"job {job_id} is already {job.status.value}",
                job_status=job.status.value,
            )
        # Logged first: workers running fresh messages from their snapshot check it.
        await state.cancellations.record(job_id)
        now = utcnow()
        waiting = job.status in CANCELLABLE_STATUSES
        transition = cancel(job, now) if waiting else request_cancel(job, now)
        stored = await state.committer.apply(transition, durable=True)
        if stored is None:
            continue
        try:
            await state.publisher.publish_control({"action": "cancel", "job_id": job_id})
        except BrokerUnavailableError as exc:
            # The request is recorded: workers poll the log, a redelivery sees the job.
            log.warning("cancel signal not sent", job_id=job_id, error=str(exc))
        log.info("job cancelled" if waiting else "job cancel requested", job_id=job_id)
        code = status.HTTP_200_OK if waiting else status.HTTP_202_ACCEPTED
        return JSONResponse(JobOut.of(stored).model_dump(mode="json"), status_code=code)
    raise ApiError(409, "job_busy", f"job {job_id} kept changing; try again")
