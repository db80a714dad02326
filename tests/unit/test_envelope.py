"""The versioned broker envelope and utcnow."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from pydantic import ValidationError

from conveyor_kernel.model import ENVELOPE_VERSION, Job, JobEnvelope, JobSubmission, utcnow


def make_job(**overrides: object) -> Job:
    sub = JobSubmission(type="echo", payload={"a": 1}, priority=7, max_retries=2)
    job = Job.from_submission(sub, default_timeout_s=30.0)
    return job.model_copy(update=overrides)


def test_envelope_fields() -> None:
    job = make_job(next_attempt=3)
    env = job.envelope()
    assert env.v == ENVELOPE_VERSION == 1
    assert (env.job_id, env.type, env.attempt, env.priority) == (job.id, "echo", 3, 7)
    assert env.enqueued_at.tzinfo is not None


def test_envelope_json_round_trip() -> None:
    env = make_job().envelope()
    assert JobEnvelope.model_validate_json(env.model_dump_json()) == env


def envelope_dict(**overrides: object) -> dict[str, object]:
    return {"v": 1, "job_id": "abc", "type": "echo", "attempt": 1, "priority": 5} | overrides


@pytest.mark.parametrize(
    "overrides",
    [
        {"v": 2},
        {"extra": "x"},
        {"priority": 0},
        {"priority": 11},
        {"attempt": 0},
        {"job_id": ""},
        {"type": "Bad Type"},
    ],
)
def test_envelope_rejects_invalid(overrides: dict[str, object]) -> None:
    assert JobEnvelope.model_validate(envelope_dict())  # the baseline is valid
    with pytest.raises(ValidationError):
        JobEnvelope.model_validate(envelope_dict(**overrides))


def test_envelope_is_frozen() -> None:
    env = JobEnvelope.model_validate(envelope_dict())
    with pytest.raises(ValidationError):
        env.attempt = 2  # type: ignore[misc]


def test_utcnow_is_aware_utc_millisecond_precision() -> None:
    for _ in range(20):
        now = utcnow()
        assert now.tzinfo is UTC
        assert now.utcoffset() == timedelta(0)
        assert now.microsecond % 1000 == 0
