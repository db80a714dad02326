"""``/v1/dead-letters``: jobs parked after their final failure; redrive and purge."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conveyor_api.auth import Admin
from conveyor_api.problems import ApiError
from conveyor_api.state import AppState, State
from conveyor_kernel import live
from conveyor_kernel.broker import BROKER_ERRORS
from conveyor_kernel.commit import Written
from conveyor_kernel.documents import check_value
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.machine import redrive as redrive_job
from conveyor_kernel.model import Job, JobStatus, utcnow

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"], dependencies=[Admin])
MAX_REDRIVE = 1000
log = get_logger(__name__)
PURGE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *BROKER_ERRORS)


class DeadLetterOut(BaseModel):
    job_id: str
    type: str
    reason: str
    error: str | None
    attempts: int
    dead_lettered_at: datetime


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None


class RedriveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=MAX_REDRIVE
    )
    all: bool = False

    @field_validator("ids")
    @classmethod
    def _storable(cls, ids: list[str] | None) -> list[str] | None:
        check_value(ids)  # no NUL or lone surrogate reaches the store
        return ids

    @model_validator(mode="after")
    def _ids_or_all(self) -> RedriveIn:
        if (self.ids is None) == (not self.all):
            raise ValueError('give either "ids" or "all": true')
        return self


class Skipped(BaseModel):
    job_id: str
    reason: str


class RedriveOut(BaseModel):
    redriven: list[str]
    skipped: list[Skipped]


class PurgeOut(BaseModel):
    purged_jobs: int
    purged_messages: int


def _out(job: Job) -> DeadLetterOut:
    assert job.dead_letter is not None
    return DeadLetterOut(
        job_id=job.id,
        type=job.type,
        reason=job.dead_letter.reason,
        error=job.error,
        attempts=len(job.attempts),
        dead_lettered_at=job.dead_letter.at,
    )


@router.get("")
async def list_dead_letters(
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeadLetterPage:
    """Parked jobs, newest first (poison messages have no job: see the parking-lot queue)."""
    page = await state.store.list(dead_lettered=True, limit=limit, cursor=cursor)
    return DeadLetterPage(items=[_out(j) for j in page.jobs], next_cursor=page.next_cursor)


async def _dead_letter_ids(state: AppState, at_most: int) -> list[str]:
    """Up to ``at_most`` dead letters, newest first (pages may be short: follow them)."""
    ids: list[str] = []
    cursor = None
    while len(ids) < at_most:
        page = await state.store.list(dead_lettered=True, limit=at_most - len(ids), cursor=cursor)
        ids.extend(j.id for j in page.jobs)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return ids


async def _redrive_one(
    state: AppState, job_id: str, operator: str, requested_at: datetime
) -> Written | str:
    job = await state.store.get(job_id)
    if job is None:
        return "no such job"
    if job.dead_letter is None or job.status is not JobStatus.FAILED:
        return "not a dead letter"
    if job.dead_letter.at > requested_at:
        # Redriven by a concurrent request and parked again since: not the dead
        # letter this request was about.
        return "parked again after this request"
    # Exactly one redrive per parked version of the job, even with two operators.
    claim = f"redrive:{job.id}:{job.rev}"
    if not await state.claims.claim(claim, operator):
        return "already being redriven"
    try:
        written = await state.committer.write(redrive_job(job, utcnow()), durable=True)
    except BaseException:
        # The redrive did not happen: free the claim so a retry is not refused for days.
        with contextlib.suppress(StoreUnavailableError):
            await asyncio.shield(state.claims.release(claim, operator))
        raise
    if written is None:
        await state.claims.release(claim, operator)
        return "changed meanwhile"
    return written


@router.post("/redrive")
async def redrive(body: RedriveIn, state: State) -> RedriveOut:
    """Send parked jobs back to the queue with a fresh retry budget (``queued``).

    Safe with concurrent operators: each parked job is claimed once, so it is
    neither duplicated nor lost; the loser reports it under ``skipped``. Only jobs
    parked before the request arrived are redriven (one that a concurrent redrive
    sent back and that failed again since is skipped).
    """
    requested_at = utcnow()
    if body.all:
        ids = await _dead_letter_ids(state, MAX_REDRIVE)
    else:
        ids = list(dict.fromkeys(body.ids or []))
    operator = uuid.uuid4().hex
    redriven: list[Written] = []
    skipped: list[Skipped] = []
    for job_id in ids:
        result = await _redrive_one(state, job_id, operator, requested_at)
        if isinstance(result, str):
            skipped.append(Skipped(job_id=job_id, reason=result))
        else:
            redriven.append(result)
    # Published only once every claim is written: a job redriven here cannot fail
    # again and look like a fresh dead letter to a concurrent redrive meanwhile.
    for written in redriven:
        await written.send()
    if state.live.watched:
        state.live.emit(*(live.queued(w.job) for w in redriven))
    return RedriveOut(redriven=[w.job.id for w in redriven], skipped=skipped)


@router.delete("")
async def purge(
    state: State, confirm: Annotated[bool, Query(description="Must be true")] = False
) -> PurgeOut:
    """Forget every dead letter (the jobs stay, ``failed``) and empty the parking lot."""
    if not confirm:
        raise ApiError(400, "confirmation_required", "purging needs ?confirm=true")
    expires_at = utcnow() + timedelta(seconds=state.settings.failed_job_retention_s)
    purged_jobs = await state.store.clear_dead_letters(expires_at)
    purged_messages = 0
    try:
        async with asyncio.timeout(state.settings.publish_timeout_s):
            channel = await state.connection.channel()
            try:
                queue = await channel.get_queue(state.topology.parking_lot_queue)
                result = await queue.purge()
                purged_messages = int(result.message_count or 0)
            finally:
                await channel.close()
    except PURGE_ERRORS as exc:
        log.warning("parking lot not purged", error=str(exc))
        raise ApiError(
            503,
            "broker_unavailable",
            "dead letters cleared but the parking lot was not purged (broker unavailable)",
            purged_jobs=purged_jobs,
        ) from exc
    return PurgeOut(purged_jobs=purged_jobs, purged_messages=purged_messages)
