"""The job model: what a client submits, what MongoDB stores and what RabbitMQ carries.

The broker message (:class:`JobEnvelope`) is versioned (``v``) and small: it names
the job and the attempt; the job document in MongoDB is the source of truth.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from conveyor_kernel.documents import check_value
from conveyor_kernel.notify_spec import NotifySpec

JOB_TYPE_PATTERN = r"^[a-z0-9][a-z0-9_.:-]{0,99}$"
MIN_PRIORITY = 1
MAX_PRIORITY = 10
ENVELOPE_VERSION: Literal[1] = 1
MAX_SCHEDULE_S = 366 * 86400
MAX_RETENTION_S = 366 * 86400.0
DEFAULT_RETENTION_S = 7 * 86400.0
DEFAULT_FAILED_RETENTION_S = 30 * 86400.0


def utcnow() -> datetime:
    """Now, in UTC, truncated to the millisecond precision MongoDB stores."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


EXPIRY_BUCKET_S = 10  # the retention sweep's unit of work (conveyor_kernel.retention)
BUCKET_KEY_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # how a bucket's start is stored: sortable text


def expiry_bucket_start(at: datetime) -> datetime:
    """The start of the expiry bucket ``at`` falls in."""
    at = at.astimezone(UTC)
    return at.replace(second=at.second // EXPIRY_BUCKET_S * EXPIRY_BUCKET_S, microsecond=0)


def expiry_bucket(at: datetime) -> str:
    """The stored key of the expiry bucket ``at`` falls in (``2026-12-07T11:50:10Z``):
    the retention sweep finds due jobs by equality on it, which every MongoDB-wire
    server can serve from an index, instead of a range scan over all jobs."""
    return expiry_bucket_start(at).strftime(BUCKET_KEY_FORMAT)


def created_bucket(at: datetime) -> str:
    """The stored key of the second ``at`` falls in (``2026-12-07T11:50:17Z``): lists
    walk jobs by it (conveyor_kernel.listing)."""
    return at.astimezone(UTC).strftime(BUCKET_KEY_FORMAT)


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting in broker delay tiers until its run_at
    QUEUED = "queued"
    RETRYING = "retrying"  # waiting in a broker delay queue until next_attempt_at
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
CANCELLABLE_STATUSES = frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING})


class AttemptOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    LOST = "lost"  # the worker died mid-attempt; the message was redelivered
    INTERRUPTED = "interrupted"  # graceful shutdown gave up on it; requeued, not counted
    CANCELLED = "cancelled"  # stopped on request (POST /v1/jobs/{id}/cancel)

    @property
    def counts_against_budget(self) -> bool:
        return self in {AttemptOutcome.FAILED, AttemptOutcome.TIMEOUT, AttemptOutcome.LOST}


class Backoff(BaseModel):
    """Delay before retry ``n`` (1-based): ``min(max_s, base_s * factor**(n-1))``.

    With ``jitter`` the delay is drawn uniformly from ``[delay/2, delay]`` (equal
    jitter: spreads retries of jobs that failed together, never waits less than
    half the nominal delay).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_s: float = Field(default=1.0, ge=0, le=86400)
    factor: float = Field(default=2.0, ge=1, le=100)
    max_s: float = Field(default=3600.0, ge=0, le=30 * 86400)
    jitter: bool = True

    def nominal_s(self, retry: int) -> float:
        if self.base_s == 0:
            return 0.0
        try:
            grown = self.base_s * self.factor ** max(retry - 1, 0)
        except OverflowError:
            return self.max_s
        return float(min(self.max_s, grown))

    def delay_s(self, retry: int, rand: float) -> float:
        """``rand`` is uniform in [0, 1) (injected so the policy stays pure)."""
        nominal = self.nominal_s(retry)
        return nominal * (0.5 + rand / 2) if self.jitter else nominal


# Caps on what one submission may cost: retries (each one an attempt and an event,
# each event maybe a webhook and an email) and how fast they come.
MAX_RETRIES = 25
MIN_BACKOFF_S = 0.1


class JobSubmission(BaseModel):
    """Body of ``POST /v1/jobs``."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        pattern=JOB_TYPE_PATTERN, description="Registered job type", examples=["echo"]
    )
    payload: dict[str, Any] = Field(
        default_factory=dict, description="Handler input", examples=[{"hello": "world"}]
    )
    priority: int = Field(
        default=5, ge=MIN_PRIORITY, le=MAX_PRIORITY, description="1..10, higher runs first"
    )
    max_retries: int = Field(
        default=3, ge=0, le=MAX_RETRIES, description="Retries after a failure (at most 25)"
    )
    timeout_s: float | None = Field(
        default=None, gt=0, le=7 * 86400, description="Per-attempt time limit (default: setting)"
    )
    backoff: Backoff = Field(default_factory=Backoff, description="Delay between attempts")
    run_at: AwareDatetime | None = Field(
        default=None, description="Run at this time (RFC 3339 with offset); before: scheduled"
    )
    delay_s: float | None = Field(
        default=None, ge=0, le=MAX_SCHEDULE_S, description="Run this many seconds from now"
    )
    notify: NotifySpec | None = Field(
        default=None, description="Webhook and/or email to notify on job events"
    )
    retention_s: float | None = Field(
        default=None,
        ge=1,
        le=MAX_RETENTION_S,
        description="Keep the finished job (and its deliveries) this long, then delete it "
        "(default: CONVEYOR_JOB_RETENTION_S, or CONVEYOR_FAILED_JOB_RETENTION_S if it fails)",
    )

    @field_validator("backoff")
    @classmethod
    def _not_too_eager(cls, backoff: Backoff) -> Backoff:
        if backoff.base_s < MIN_BACKOFF_S:
            raise ValueError(f"backoff.base_s must be at least {MIN_BACKOFF_S:g} s")
        return backoff

    @field_validator("payload")
    @classmethod
    def _storable(cls, payload: dict[str, Any]) -> dict[str, Any]:
        check_value(payload)  # UnstorableError is a ValueError: a 422 naming the field
        return payload

    @model_validator(mode="after")
    def _one_schedule(self) -> JobSubmission:
        if self.run_at is not None and self.delay_s is not None:
            raise ValueError("give run_at or delay_s, not both")
        if self.run_at is not None and (self.run_at - utcnow()).total_seconds() > MAX_SCHEDULE_S:
            raise ValueError(f"run_at is more than {MAX_SCHEDULE_S / 86400:.0f} days ahead")
        return self

    def due_at(self, now: datetime) -> datetime | None:
        """When the first attempt may run, if that is in the future."""
        if self.delay_s is not None and self.delay_s > 0:
            return now + timedelta(seconds=self.delay_s)
        if self.run_at is not None and self.run_at > now:
            return self.run_at.astimezone(UTC)
        return None


class Attempt(BaseModel):
    number: int
    worker: str
    started_at: datetime
    session: str | None = Field(
        default=None,
        description="The worker process's liveness queue: while it exists, the attempt "
        "may still be running there",
    )
    finished_at: datetime | None = None
    outcome: AttemptOutcome | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = Field(default=None, description="Last ~2,000 characters")
    duration_s: float | None = None


class JobProgress(BaseModel):
    """How far a running job says it is (``ctx.progress``)."""

    fraction: float = Field(ge=0, le=1)
    message: str | None = Field(default=None, max_length=200)
    at: datetime


class DeadLetter(BaseModel):
    """Why and when a job was parked (its final failure)."""

    reason: str
    at: datetime


def budget_spent(attempts: list[Attempt]) -> int:
    return sum(1 for a in attempts if a.outcome and a.outcome.counts_against_budget)


class Job(BaseModel):
    """A job as stored in MongoDB (``_id`` is ``id``) and returned by the API."""

    model_config = ConfigDict(populate_by_name=True)
    # The status this job had at its ``rev`` (as read, published or last written);
    # kept through model_copy, so a transition knows the status it moves from.
    _base_status: JobStatus | None = PrivateAttr(default=None)

    id: str = Field(alias="_id")
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: int = 5
    max_retries: int = 3
    timeout_s: float
    backoff: Backoff = Field(default_factory=Backoff)
    status: JobStatus = JobStatus.QUEUED
    attempts: list[Attempt] = Field(default_factory=list)
    result: Any = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    dead_letter: DeadLetter | None = None
    progress: JobProgress | None = None
    retention_s: float = Field(
        default=DEFAULT_RETENTION_S, description="How long a completed or cancelled job is kept"
    )
    failed_retention_s: float = Field(
        default=DEFAULT_FAILED_RETENTION_S,
        description="How long a failed job is kept once not a dead letter",
    )
    expires_at: datetime | None = Field(
        default=None,
        description="When the finished job is deleted (never while it waits, runs or is a "
        "dead letter)",
    )
    budget_from: int = Field(default=0, description="Attempts before this index are forgiven")
    retry_of: str | None = None
    schedule_id: str | None = Field(default=None, description="The schedule that created it")
    trace: str | None = Field(
        default=None,
        description="W3C traceparent of the span that enqueued it (when tracing is on); "
        "every message of the job carries it",
    )
    notify: NotifySpec | None = None
    emitted: list[str] = Field(
        default_factory=list, description="Ids of the events its transitions produced"
    )
    next_attempt: int = Field(default=1, description="Attempt number the next message carries")
    rev: int = Field(default=0, description="Optimistic-concurrency revision")

    @classmethod
    def from_submission(
        cls,
        sub: JobSubmission,
        *,
        default_timeout_s: float,
        retry_of: str | None = None,
        job_id: str | None = None,
        retention_s: float | None = None,
        failed_retention_s: float | None = None,
        schedule_id: str | None = None,
        trace: str | None = None,
    ) -> Job:
        now = utcnow()
        due = sub.due_at(now)
        keep = sub.retention_s
        return cls(
            retention_s=keep or retention_s or DEFAULT_RETENTION_S,
            failed_retention_s=keep or failed_retention_s or DEFAULT_FAILED_RETENTION_S,
            id=job_id or new_job_id(),
            status=JobStatus.SCHEDULED if due else JobStatus.QUEUED,
            next_attempt_at=due,
            type=sub.type,
            payload=sub.payload,
            priority=sub.priority,
            max_retries=sub.max_retries,
            timeout_s=sub.timeout_s if sub.timeout_s is not None else default_timeout_s,
            backoff=sub.backoff,
            notify=sub.notify,
            created_at=now,
            updated_at=now,
            retry_of=retry_of,
            schedule_id=schedule_id,
            trace=trace,
        )

    def model_post_init(self, context: Any, /) -> None:
        self._base_status = self.status

    @property
    def base_status(self) -> JobStatus:
        """The status at ``rev``: what the job's counts move from when it is written."""
        return self._base_status or self.status

    def rebased(self) -> Job:
        """This job as now stored: its status is the base of the next transition."""
        self._base_status = self.status
        return self

    def to_document(self) -> dict[str, Any]:
        doc = self.model_dump(by_alias=True, mode="python")
        # Derived, for equality lookups FerretDB v1 can index; not read back.
        doc["created_bucket"] = created_bucket(self.created_at)
        if self.expires_at is not None:  # the retention sweep's (conveyor_kernel.retention)
            doc["expires_bucket"] = expiry_bucket(self.expires_at)
        if self.dead_letter is not None:  # GET /v1/dead-letters
            doc["dead_lettered"] = True
        return doc

    def to_submission(self) -> JobSubmission:
        return JobSubmission(
            type=self.type,
            payload=self.payload,
            priority=self.priority,
            max_retries=self.max_retries,
            timeout_s=self.timeout_s,
            backoff=self.backoff,
            notify=self.notify,
        )

    @property
    def budget_used(self) -> int:
        """Attempts that count against ``max_retries`` (failed, timed out or lost) since
        the budget was last refilled (a redrive from the dead letters refills it)."""
        return budget_spent(self.attempts[self.budget_from :])

    @property
    def open_attempt(self) -> Attempt | None:
        if self.attempts and self.attempts[-1].finished_at is None:
            return self.attempts[-1]
        return None

    def envelope(self) -> JobEnvelope:
        return JobEnvelope(
            job_id=self.id,
            type=self.type,
            attempt=self.next_attempt,
            priority=self.priority,
            not_before=self.next_attempt_at,
            job=self.model_dump(by_alias=True, mode="json"),
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
    not_before: datetime | None = Field(
        default=None, description="Do not run before this time (retry backoff, schedules)"
    )
    job: dict[str, Any] | None = Field(
        default=None,
        description="The job document as published: a worker may run a fresh message "
        "from it without a read (its final compare-and-set still checks the revision)",
    )
    watch: bool = Field(
        default=False,
        description="A copy that re-checks an attempt still running in a live worker "
        "(its message came back, e.g. after a channel closed): it never runs the job "
        "while that worker lives",
    )
