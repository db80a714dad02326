"""Job state transitions the worker makes, each a compare-and-set on the job document.

``begin`` decides whether a delivered message should run (and records the
attempt); ``finish`` records its outcome and says whether a retry must be
published. Both re-read and retry when another writer got there first, so a
redelivered or duplicated message is harmless. A transition that ends an
attempt stages its job event before the write and publishes it after
(:mod:`conveyor_kernel.events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from conveyor_kernel.events import Events
from conveyor_kernel.model import (
    Attempt,
    AttemptOutcome,
    DeadLetter,
    Job,
    JobEnvelope,
    JobStatus,
    budget_spent,
    utcnow,
)
from conveyor_kernel.outbox import Outbox
from conveyor_kernel.store import JobStore

MAX_CAS_ROUNDS = 20


@dataclass(frozen=True)
class Run:
    job: Job
    attempt: Attempt


@dataclass(frozen=True)
class Skip:
    reason: str
    parked: Job | None = None  # the job failed here and must go to the parking lot


@dataclass(frozen=True)
class Outcome:
    outcome: AttemptOutcome
    result: object = None
    error: str | None = None
    permanent: bool = False
    error_type: str | None = None
    traceback: str | None = None  # the tail, for the attempt record


class ContentionError(RuntimeError):
    """The job document kept changing under us."""


def _close_attempt(
    job: Job, outcome: AttemptOutcome, error: str | None, detail: Outcome | None = None
) -> list[Attempt]:
    now = utcnow()
    attempts = list(job.attempts)
    last = attempts[-1]
    attempts[-1] = last.model_copy(
        update={
            "finished_at": now,
            "outcome": outcome,
            "error": error,
            "duration_s": round((now - last.started_at).total_seconds(), 3),
            "error_type": detail.error_type if detail else None,
            "traceback": detail.traceback if detail else None,
        }
    )
    return attempts


async def begin(
    store: JobStore, events: Events, env: JobEnvelope, worker_id: str, *, redelivered: bool
) -> Run | Skip:
    for _ in range(MAX_CAS_ROUNDS):
        job = await store.get(env.job_id)
        if job is None:
            return Skip("job not found (deleted)")
        if job.status.finished:
            return Skip(f"job already {job.status.value}")
        if job.cancel_requested_at is not None:
            # Cancelled while running in a worker that died or missed the signal.
            attempts = None
            if job.open_attempt is not None:
                attempts = _close_attempt(job, AttemptOutcome.CANCELLED, "cancelled")
            if await events.commit(store, job.cancelled(utcnow(), attempts)) is not None:
                return Skip("cancellation requested; marked cancelled")
            continue
        if env.attempt != job.next_attempt:
            return Skip(f"stale message for attempt {env.attempt}; job is at {job.next_attempt}")
        if job.open_attempt is not None:
            if not redelivered:
                return Skip("duplicate delivery of an attempt that is running")
            job = job.model_copy(
                update={
                    "attempts": _close_attempt(
                        job, AttemptOutcome.LOST, "worker lost mid-attempt; message redelivered"
                    )
                }
            )
        now = utcnow()
        if job.budget_used > job.max_retries:
            failed = job.model_copy(
                update={
                    "status": JobStatus.FAILED,
                    "error": "retries exhausted (worker lost mid-attempt)",
                    "finished_at": now,
                    "dead_letter": DeadLetter(reason="retries exhausted", at=now),
                    "updated_at": now,
                }
            )
            stored = await events.commit(store, failed)
            if stored is not None:
                return Skip("retries exhausted by lost attempts; marked failed", parked=stored)
            continue
        attempt = Attempt(number=len(job.attempts) + 1, worker=worker_id, started_at=now)
        running = job.model_copy(
            update={
                "status": JobStatus.RUNNING,
                "attempts": [*job.attempts, attempt],
                "started_at": job.started_at or now,
                "next_attempt_at": None,
                "updated_at": now,
            }
        )
        stored = await store.compare_and_set(running)
        if stored is not None:
            return Run(job=stored, attempt=attempt)
    raise ContentionError(f"job {env.job_id}: gave up after {MAX_CAS_ROUNDS} CAS rounds")


async def finish(
    store: JobStore, outbox: Outbox, events: Events, run: Run, outcome: Outcome, *, rand: float
) -> Job | None:
    """Record ``outcome``; returns the stored job, or ``None`` if nothing was recorded.

    A job that goes ``retrying`` must then have its next attempt published (with
    ``not_before`` = ``next_attempt_at``); its outbox entry is written before the
    job moves on, so a crash right after the write still gets it published.
    ``rand`` (uniform in [0, 1)) drives the backoff jitter.
    """
    job: Job | None = run.job
    for _ in range(MAX_CAS_ROUNDS):
        if job is None:
            return None  # deleted meanwhile: nothing to record
        last = job.attempts[-1] if job.attempts else None
        if (
            job.status.finished
            or last is None
            or last.number != run.attempt.number
            or (last.finished_at is not None)
        ):
            return None  # someone else closed this attempt (e.g. marked it lost)
        now = utcnow()
        attempts = _close_attempt(job, outcome.outcome, outcome.error, outcome)
        update: dict[str, object] = {"attempts": attempts, "updated_at": now}
        if outcome.outcome is AttemptOutcome.COMPLETED:
            update |= {
                "status": JobStatus.COMPLETED,
                "result": outcome.result,
                "error": None,
                "finished_at": now,
            }
        elif outcome.outcome is AttemptOutcome.CANCELLED:
            update |= {
                "status": JobStatus.CANCELLED,
                "error": "cancelled by request",
                "finished_at": now,
            }
        elif outcome.outcome is AttemptOutcome.INTERRUPTED:
            # Shutdown: the message is requeued as-is and runs again; no budget spent.
            update |= {"status": JobStatus.QUEUED}
        else:
            used = budget_spent(attempts[job.budget_from :])
            if outcome.permanent or used > job.max_retries:
                reason = "permanent error" if outcome.permanent else "retries exhausted"
                update |= {
                    "status": JobStatus.FAILED,
                    "error": outcome.error,
                    "finished_at": now,
                    "dead_letter": DeadLetter(reason=reason, at=now),
                }
            else:
                delay = job.backoff.delay_s(used, rand)
                await outbox.add(job.id, job.next_attempt + 1)
                update |= {
                    "status": JobStatus.RETRYING,
                    "error": outcome.error,
                    "next_attempt": job.next_attempt + 1,
                    "next_attempt_at": now + timedelta(seconds=delay),
                }
        stored = await events.commit(store, job.model_copy(update=update))
        if stored is not None:
            return stored
        job = await store.get(job.id)
    raise ContentionError(f"job {run.job.id}: gave up after {MAX_CAS_ROUNDS} CAS rounds")
