"""The job model: submission validation and the stored job document."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from conveyor_kernel.model import (
    Attempt,
    AttemptOutcome,
    Job,
    JobStatus,
    JobSubmission,
    utcnow,
)


def make_job(**overrides: object) -> Job:
    sub = JobSubmission(type="echo", payload={"a": 1}, priority=7, max_retries=2)
    job = Job.from_submission(sub, default_timeout_s=30.0)
    return job.model_copy(update=overrides)


def attempt(number: int, outcome: AttemptOutcome | None, *, finished: bool = True) -> Attempt:
    now = utcnow()
    return Attempt(
        number=number,
        worker="w1",
        started_at=now,
        finished_at=now if finished else None,
        outcome=outcome,
    )


# --- JobSubmission -----------------------------------------------------------------


@pytest.mark.parametrize("job_type", ["echo", "a", "image-process", "ns.sub:type_1", "9x"])
def test_submission_accepts_valid_types(job_type: str) -> None:
    assert JobSubmission(type=job_type).type == job_type


@pytest.mark.parametrize(
    "job_type", ["", "Echo", "-echo", "_x", "has space", "a/b", "é", "a" * 101]
)
def test_submission_rejects_invalid_types(job_type: str) -> None:
    with pytest.raises(ValidationError, match="type"):
        JobSubmission(type=job_type)


def test_submission_type_length_limit_is_100() -> None:
    assert JobSubmission(type="a" * 100).type == "a" * 100


def test_submission_defaults() -> None:
    sub = JobSubmission(type="echo")
    assert (sub.payload, sub.priority, sub.max_retries, sub.timeout_s) == ({}, 5, 3, None)


@pytest.mark.parametrize("priority", [1, 10])
def test_submission_priority_bounds_inclusive(priority: int) -> None:
    assert JobSubmission(type="echo", priority=priority).priority == priority


@pytest.mark.parametrize("priority", [0, 11, -1])
def test_submission_priority_out_of_bounds(priority: int) -> None:
    with pytest.raises(ValidationError, match="priority"):
        JobSubmission(type="echo", priority=priority)


def test_submission_max_retries_must_be_non_negative() -> None:
    assert JobSubmission(type="echo", max_retries=0).max_retries == 0
    with pytest.raises(ValidationError, match="max_retries"):
        JobSubmission(type="echo", max_retries=-1)


@pytest.mark.parametrize("timeout", [0, -0.5])
def test_submission_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ValidationError, match="timeout_s"):
        JobSubmission(type="echo", timeout_s=timeout)


def test_submission_forbids_extra_fields() -> None:
    with pytest.raises(ValidationError, match="extra"):
        JobSubmission.model_validate({"type": "echo", "prio": 3})


@pytest.mark.parametrize("payload", [[1, 2], "text", 3, None])
def test_submission_payload_must_be_an_object(payload: object) -> None:
    with pytest.raises(ValidationError, match="payload"):
        JobSubmission.model_validate({"type": "echo", "payload": payload})


# --- Job ---------------------------------------------------------------------------


def test_from_submission_defaults() -> None:
    job = Job.from_submission(JobSubmission(type="echo"), default_timeout_s=42.0)
    assert job.timeout_s == 42.0
    assert job.status is JobStatus.QUEUED
    assert job.next_attempt == 1
    assert job.rev == 0
    assert job.attempts == []
    assert job.retry_of is None
    assert job.created_at == job.updated_at
    assert len(job.id) == 32


def test_from_submission_keeps_explicit_timeout_and_retry_of() -> None:
    sub = JobSubmission(type="echo", timeout_s=1.5)
    job = Job.from_submission(sub, default_timeout_s=42.0, retry_of="old")
    assert job.timeout_s == 1.5
    assert job.retry_of == "old"


def test_from_submission_gives_unique_ids() -> None:
    sub = JobSubmission(type="echo")
    assert Job.from_submission(sub, default_timeout_s=1).id != (
        Job.from_submission(sub, default_timeout_s=1).id
    )


def test_to_document_uses_underscore_id() -> None:
    job = make_job()
    doc = job.to_document()
    assert doc["_id"] == job.id
    assert "id" not in doc
    assert doc["status"] == "queued"


def test_document_round_trip() -> None:
    job = make_job(attempts=[attempt(1, AttemptOutcome.FAILED)], status=JobStatus.RUNNING)
    back = Job.model_validate(job.to_document())
    assert back.model_dump() == job.model_dump()
    assert back.attempts[0].outcome is AttemptOutcome.FAILED
    assert back.base_status is JobStatus.RUNNING  # as read: what its next write moves from


def test_a_transition_remembers_the_status_it_moves_from() -> None:
    job = make_job(status=JobStatus.QUEUED)
    moved = job.model_copy(update={"status": JobStatus.RUNNING})
    assert (moved.status, moved.base_status) == (JobStatus.RUNNING, JobStatus.QUEUED)
    assert moved.rebased().base_status is JobStatus.RUNNING


def test_to_submission_round_trip() -> None:
    job = make_job()
    sub = job.to_submission()
    assert (sub.type, sub.payload, sub.priority, sub.max_retries, sub.timeout_s) == (
        "echo",
        {"a": 1},
        7,
        2,
        30.0,
    )


def test_budget_used_counts_failed_timeout_lost_only() -> None:
    attempts = [
        attempt(1, AttemptOutcome.FAILED),
        attempt(2, AttemptOutcome.TIMEOUT),
        attempt(3, AttemptOutcome.LOST),
        attempt(4, AttemptOutcome.INTERRUPTED),
        attempt(5, AttemptOutcome.COMPLETED),
        attempt(6, None, finished=False),
    ]
    assert make_job(attempts=attempts).budget_used == 3
    assert make_job().budget_used == 0


def test_open_attempt() -> None:
    assert make_job().open_attempt is None
    closed = attempt(1, AttemptOutcome.FAILED)
    assert make_job(attempts=[closed]).open_attempt is None
    running = attempt(2, None, finished=False)
    assert make_job(attempts=[closed, running]).open_attempt is running


def test_finished_statuses() -> None:
    assert JobStatus.COMPLETED.finished
    assert JobStatus.FAILED.finished
    assert not JobStatus.QUEUED.finished
    assert not JobStatus.RUNNING.finished


def test_delay_s_makes_a_scheduled_job() -> None:
    from conveyor_kernel.model import JobStatus

    job = Job.from_submission(JobSubmission(type="echo", delay_s=10), default_timeout_s=5)
    assert job.status is JobStatus.SCHEDULED
    assert job.next_attempt_at is not None
    assert 9.9 <= (job.next_attempt_at - job.created_at).total_seconds() <= 10.1
    assert job.envelope().not_before == job.next_attempt_at


def test_past_run_at_is_queued_now() -> None:
    from conveyor_kernel.model import JobStatus

    sub = JobSubmission.model_validate({"type": "echo", "run_at": "2000-01-01T00:00:00Z"})
    job = Job.from_submission(sub, default_timeout_s=5)
    assert job.status is JobStatus.QUEUED
    assert job.next_attempt_at is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "echo", "max_retries": 26}, "less than or equal to 25"),
        ({"type": "echo", "backoff": {"base_s": 0.05}}, "backoff.base_s must be at least 0.1 s"),
        ({"type": "echo", "backoff": {"base_s": 0}}, "at least 0.1 s"),
    ],
)
def test_submission_caps(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        JobSubmission.model_validate(body)
    assert JobSubmission.model_validate({"type": "echo", "max_retries": 25}).max_retries == 25
