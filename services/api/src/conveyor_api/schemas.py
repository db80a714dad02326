"""Response models of the public API (internal bookkeeping fields are not exposed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from conveyor_kernel.model import Attempt, Backoff, Job, JobStatus
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
    notify: NotifySpec | None = None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls.model_validate(job.model_dump(include=set(cls.model_fields)))


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
    queues: dict[str, QueueOut] | None
    broker_error: str | None = None


class JobTypeOut(BaseModel):
    name: str
    description: str
