"""The state machine without servers: every transition and decision."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor_kernel.machine import (
    Defer,
    Outcome,
    Repair,
    Run,
    Skip,
    Write,
    admit,
    cancel,
    finish,
    redrive,
    request_cancel,
)
from conveyor_kernel.model import (
    Attempt,
    AttemptOutcome,
    Backoff,
    Job,
    JobStatus,
    JobSubmission,
    utcnow,
)

NOW = utcnow()


def new_job(**sub: object) -> Job:
    return Job.from_submission(JobSubmission(type="echo", **sub), default_timeout_s=30)


def started(job: Job, *, redelivered: bool = False, worker: str = "w1") -> Run:
    decision = admit(job, job.envelope(), worker, NOW, redelivered=redelivered)
    assert isinstance(decision, Run)
    return decision


def test_fast_attempt_is_one_write_recording_the_whole_attempt() -> None:
    job = new_job(payload={"x": 1})
    run = started(job)
    assert not run.record_now
    assert run.running.status is JobStatus.RUNNING
    assert run.running.rev == job.rev  # nothing written: the finish compares the stored rev
    # the finish works on the stored (unwritten) job and records the attempt itself
    t = finish(job, run.attempt, Outcome(AttemptOutcome.COMPLETED, result={"x": 1}), NOW, rand=0)
    assert t is not None
    assert not t.publish
    assert not t.park
    done = t.job
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"x": 1}
    assert [a.outcome for a in done.attempts] == [AttemptOutcome.COMPLETED]
    assert done.attempts[0].worker == "w1"
    assert done.started_at == NOW
    assert done.finished_at == NOW


def test_recorded_attempt_is_closed_where_it_stands() -> None:
    run = started(new_job())
    stored = run.running.model_copy(update={"rev": 1})
    t = finish(stored, run.attempt, Outcome(AttemptOutcome.COMPLETED), NOW, rand=0.0)
    assert t is not None
    assert len(t.job.attempts) == 1
    assert t.job.rev == 1


def test_failure_retries_with_backoff_and_publishes_the_next_attempt() -> None:
    job = new_job(max_retries=2, backoff=Backoff(base_s=4, factor=2, jitter=False))
    run = started(job)
    t = finish(job, run.attempt, Outcome(AttemptOutcome.FAILED, error="boom"), NOW, rand=0.5)
    assert t is not None
    assert t.publish
    assert t.job.status is JobStatus.RETRYING
    assert t.job.next_attempt == 2
    assert t.job.next_attempt_at == NOW + timedelta(seconds=4)
    assert t.job.envelope().attempt == 2
    assert t.job.envelope().not_before == t.job.next_attempt_at


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (Outcome(AttemptOutcome.FAILED, error="bad", permanent=True), "permanent error"),
        (Outcome(AttemptOutcome.TIMEOUT, error="slow"), "retries exhausted"),
    ],
)
def test_final_failure_parks(outcome: Outcome, reason: str) -> None:
    job = new_job(max_retries=0)
    t = finish(job, started(job).attempt, outcome, NOW, rand=0.0)
    assert t is not None
    assert t.park
    assert not t.publish
    assert t.job.status is JobStatus.FAILED
    assert t.job.dead_letter is not None
    assert t.job.dead_letter.reason == reason


def test_interrupted_attempt_requeues_without_spending_budget() -> None:
    job = new_job(max_retries=0)
    t = finish(job, started(job).attempt, Outcome(AttemptOutcome.INTERRUPTED), NOW, rand=0.0)
    assert t is not None
    assert t.job.status is JobStatus.QUEUED
    assert not t.publish  # the worker requeues the message it holds
    assert t.job.budget_used == 0
    again = started(t.job)
    assert again.attempt.number == 2


def test_cancelled_attempt_ends_cancelled() -> None:
    job = new_job()
    t = finish(job, started(job).attempt, Outcome(AttemptOutcome.CANCELLED, error="x"), NOW, rand=0)
    assert t is not None
    assert t.job.status is JobStatus.CANCELLED
    assert t.job.attempts[0].outcome is AttemptOutcome.CANCELLED
    assert t.job.cancel_requested_at == NOW


def test_finish_is_refused_once_the_job_moved_on() -> None:
    job = new_job()
    run = started(job)
    cancelled = cancel(job, NOW).job
    assert finish(cancelled, run.attempt, Outcome(AttemptOutcome.COMPLETED), NOW, rand=0) is None
    # another worker's attempt (a redelivery while ours still ran) is not ours to close
    theirs = started(job, redelivered=True, worker="w2").running
    assert finish(theirs, run.attempt, Outcome(AttemptOutcome.COMPLETED), NOW, rand=0) is None


def test_admit_skips_what_must_not_run() -> None:
    job = new_job()
    env = job.envelope()
    assert isinstance(admit(None, env, "w", NOW, redelivered=False), Skip)
    done = finish(job, started(job).attempt, Outcome(AttemptOutcome.COMPLETED), NOW, rand=0)
    assert done is not None
    assert isinstance(admit(done.job, env, "w", NOW, redelivered=False), Skip)
    stale = job.model_copy(update={"next_attempt": 3})
    assert "stale" in admit(stale, env, "w", NOW, redelivered=False).reason  # type: ignore[union-attr]
    running = started(job).running
    assert isinstance(admit(running, env, "w", NOW, redelivered=False), Skip)


def test_redelivered_open_attempt_is_lost_and_the_next_is_recorded_first() -> None:
    job = new_job(max_retries=1)
    running = started(job, worker="dead").running.model_copy(update={"rev": 1})
    decision = admit(running, job.envelope(), "w2", NOW, redelivered=True)
    assert isinstance(decision, Run)
    assert decision.record_now
    assert [a.outcome for a in decision.running.attempts] == [AttemptOutcome.LOST, None]
    assert decision.running.attempts[1].number == 2


def test_lost_attempts_past_the_budget_fail_and_park() -> None:
    job = new_job(max_retries=0)
    running = started(job, worker="dead").running
    decision = admit(running, job.envelope(), "w2", NOW, redelivered=True)
    assert isinstance(decision, Write)
    assert decision.transition.park
    assert decision.transition.job.status is JobStatus.FAILED


def test_redelivery_after_the_outcome_was_stored_repairs_its_effects() -> None:
    job = new_job(max_retries=1)
    env = job.envelope()
    retry = finish(job, started(job).attempt, Outcome(AttemptOutcome.FAILED), NOW, rand=0)
    assert retry is not None
    decision = admit(retry.job, env, "w2", NOW, redelivered=True)
    assert isinstance(decision, Repair)
    assert decision.transition.publish  # the next attempt's message again
    # not redelivered: a plain duplicate, nothing to repair
    assert isinstance(admit(retry.job, env, "w2", NOW, redelivered=False), Skip)
    failed = finish(
        job, started(job).attempt, Outcome(AttemptOutcome.FAILED, permanent=True), NOW, rand=0
    )
    assert failed is not None
    repair = admit(failed.job, env, "w2", NOW, redelivered=True)
    assert isinstance(repair, Repair)
    assert repair.transition.park


def test_cancel_requested_while_running_is_completed_by_the_next_delivery() -> None:
    job = new_job()
    running = started(job).running
    requested = request_cancel(running, NOW).job
    assert requested.cancel_requested_at == NOW
    decision = admit(requested, job.envelope(), "w2", NOW, redelivered=True)
    assert isinstance(decision, Write)
    assert decision.transition.job.status is JobStatus.CANCELLED
    assert decision.transition.job.attempts[0].outcome is AttemptOutcome.CANCELLED


def test_redrive_gives_a_fresh_budget_and_publishes() -> None:
    job = new_job(max_retries=0)
    failed = finish(job, started(job).attempt, Outcome(AttemptOutcome.FAILED), NOW, rand=0)
    assert failed is not None
    t = redrive(failed.job, NOW)
    assert t.publish
    assert t.job.status is JobStatus.QUEUED
    assert t.job.dead_letter is None
    assert t.job.budget_used == 0
    assert t.job.next_attempt == 2
    assert isinstance(admit(t.job, t.job.envelope(), "w", NOW, redelivered=False), Run)


def test_attempt_records_are_well_formed() -> None:
    job = new_job()
    run = started(job)
    assert run.attempt == Attempt(number=1, worker="w1", started_at=NOW)


def test_redelivered_attempt_of_a_live_worker_is_deferred_not_run_twice() -> None:
    job = new_job(max_retries=3)
    running = started(job, worker="alive").running
    decision = admit(running, job.envelope(), "w2", NOW, redelivered=True, holder_alive=True)
    assert isinstance(decision, Defer)
    # The same message once the holder is gone: the attempt is lost, the job runs again.
    rerun = admit(running, job.envelope(), "w2", NOW, redelivered=True, holder_alive=False)
    assert isinstance(rerun, Run)
    assert [a.outcome for a in rerun.running.attempts] == [AttemptOutcome.LOST, None]


def test_watch_copy_of_an_ended_attempt_is_dropped_without_repairs() -> None:
    job = new_job(max_retries=1)
    run = started(job, worker="alive")
    retry = finish(run.running, run.attempt, Outcome(AttemptOutcome.FAILED), NOW, rand=0)
    assert retry is not None
    assert retry.publish
    watch = job.envelope().model_copy(update={"watch": True, "job": None})
    decision = admit(retry.job, watch, "w2", NOW, redelivered=True)
    assert isinstance(decision, Skip)  # the live worker sent the retry; no second one
    plain = admit(retry.job, job.envelope(), "w2", NOW, redelivered=True)
    assert isinstance(plain, Repair)  # a redelivery (the holder died) re-sends effects


def test_attempt_records_the_worker_session() -> None:
    job = new_job()
    decision = admit(job, job.envelope(), "w1", NOW, redelivered=False, session="w1.abcd")
    assert isinstance(decision, Run)
    assert decision.attempt.session == "w1.abcd"


def test_finished_jobs_expire_after_their_retention_but_dead_letters_never() -> None:
    job = new_job(max_retries=0, retention_s=60)
    run = started(job)
    done = finish(run.running, run.attempt, Outcome(AttemptOutcome.COMPLETED), NOW, rand=0)
    assert done is not None
    assert done.job.expires_at == NOW + timedelta(seconds=60)
    failed = finish(run.running, run.attempt, Outcome(AttemptOutcome.FAILED), NOW, rand=0)
    assert failed is not None
    assert failed.job.status is JobStatus.FAILED
    assert failed.job.expires_at is None  # a dead letter stays until redriven or purged
    assert redrive(failed.job, NOW).job.expires_at is None
    assert cancel(job, NOW).job.expires_at == NOW + timedelta(seconds=60)
    defaults = Job.from_submission(
        JobSubmission(type="echo"), default_timeout_s=30, retention_s=5, failed_retention_s=9
    )
    assert (defaults.retention_s, defaults.failed_retention_s) == (5, 9)
