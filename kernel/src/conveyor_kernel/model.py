"""The job model: what a client submits, what MongoDB stores and what RabbitMQ carries.

The broker message (:class:`JobEnvelope`) is versioned (``v``) and small: it names
the job and the attempt; the job document in MongoDB is the source of truth.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JOB_TYPE_PATTERN = r"^[a-z0-9][a-z0-9_.:-]{0,99}$"
MIN_PRIORITY = 1
MAX_PRIORITY = 10
ENVELOPE_VERSION: Literal[1] = 1


def utcnow() -> datetime:
    """Now, in UTC, truncated to the millisecond precision MongoDB stores."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


class AttemptOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    LOST = "lost"  # the worker died mid-attempt; the message was redelivered
    INTERRUPTED = "interrupted"  # graceful shutdown gave up on it; requeued, not counted

    @property
    def counts_against_budget(self) -> bool:
        return self in {AttemptOutcome.FAILED, AttemptOutcome.TIMEOUT, AttemptOutcome.LOST}


class JobSubmission(BaseModel):
    """Body of ``POST /v1/jobs``."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=JOB_TYPE_PATTERN, description="Registered job type")
    payload: dict[str, Any] = Field(default_factory=dict, description="Handler input")
    priority: int = Field(
        default=5, ge=MIN_PRIORITY, le=MAX_PRIORITY, description="1..10, higher runs first"
    )
    max_retries: int = Field(default=3, ge=0, le=100, description="Retries after a failure")
    timeout_s: float | None = Field(
        default=None, gt=0, le=7 * 86400, description="Per-attempt time limit (default: setting)"
    )


class Attempt(BaseModel):
    number: int
    worker: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: AttemptOutcome | None = None
    error: str | None = None
    duration_s: float | None = None


class Job(BaseModel):
    """A job as stored in MongoDB (``_id`` is ``id``) and returned by the API."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: int = 5
    max_retries: int = 3
    timeout_s: float
    status: JobStatus = JobStatus.QUEUED
    attempts: list[Attempt] = Field(default_factory=list)
    result: Any = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retry_of: str | None = None
    next_attempt: int = Field(default=1, description="Attempt number the next message carries")
    rev: int = Field(default=0, description="Optimistic-concurrency revision")

    @classmethod
    def from_submission(
        cls, sub: JobSubmission, *, default_timeout_s: float, retry_of: str | None = None
    ) -> Job:
        now = utcnow()
        return cls(
            id=new_job_id(),
            type=sub.type,
            payload=sub.payload,
            priority=sub.priority,
            max_retries=sub.max_retries,
            timeout_s=sub.timeout_s if sub.timeout_s is not None else default_timeout_s,
            created_at=now,
            updated_at=now,
            retry_of=retry_of,
        )

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="python")

    def to_submission(self) -> JobSubmission:
        return JobSubmission(
            type=self.type,
            payload=self.payload,
            priority=self.priority,
            max_retries=self.max_retries,
            timeout_s=self.timeout_s,
        )

    @property
    def budget_used(self) -> int:
        """Attempts that count against ``max_retries`` (failed, timed out or lost)."""
        return sum(1 for a in self.attempts if a.outcome and a.outcome.counts_against_budget)

    @property
    def open_attempt(self) -> Attempt | None:
        if self.attempts and self.attempts[-1].finished_at is None:
            return self.attempts[-1]
        return None

    def envelope(self) -> JobEnvelope:
        return JobEnvelope(
            job_id=self.id, type=self.type, attempt=self.next_attempt, priority=self.priority
        )


class JobEnvelope(BaseModel):
    """The versioned broker message body. Anything else on the queue is poison."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = ENVELOPE_VERSION
    job_id: str = Field(min_length=1, max_length=64)
    type: str = Field(pattern=JOB_TYPE_PATTERN)
    attempt: int = Field(ge=1)
    priority: int = Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)
    enqueued_at: datetime = Field(default_factory=utcnow)
