"""Response models of the public API (internal bookkeeping fields are not exposed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from conveyor_kernel.model import Attempt, Backoff, Job, JobProgress, JobStatus
from conveyor_kernel.notify_spec import NotifySpec


class JobOut(BaseModel):
    id: str
    type: str
    status: JobStatus
    payload: dict[str, Any]
    priority: int
    max_retries: int
    timeout_s: float
    backoff: Backoff
    attempts: list[Attempt]
    result: Any = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    retry_of: str | None = None
    schedule_id: str | None = None
    notify: NotifySpec | None = None
    expires_at: datetime | None = Field(
        default=None, description="When the finished job will be deleted (retention)"
    )
    progress: JobProgress | None = Field(
        default=None, description="The handler's last ctx.progress report (fraction 0..1)"
    )
    trace_id: str | None = Field(
        default=None,
        description="The OpenTelemetry trace holding the job's enqueue and attempts "
        "(when tracing is on): look it up in your tracing backend",
    )

    @classmethod
    def of(cls, job: Job) -> JobOut:
        out = job.model_dump(include=set(cls.model_fields))
        if job.trace:
            out["trace_id"] = job.trace.split("-")[1] if job.trace.count("-") == 3 else None
        return cls.model_validate(out)


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class QueueOut(BaseModel):
    name: str
    messages: int
    consumers: int


class StatsOut(BaseModel):
    total: int
    by_status: dict[str, int]
    by_type: dict[str, int]
    counted_at: datetime = Field(description="When the job counts were taken")
    counts_age_s: float = Field(description="Age of the job counts, in seconds")
    counts_stale: bool = Field(
        description="The store did not answer in time: these are the last counts "
        "obtained (counts_error says why)"
    )
    counts_error: str | None = Field(default=None, description="Why the counts could not be read")
    queues: dict[str, QueueOut] | None
    broker_error: str | None = None


class JobTypeOut(BaseModel):
    name: str
    description: str
