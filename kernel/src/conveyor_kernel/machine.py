"""The job's state machine: every transition, as pure functions over :class:`Job`.

Each function takes the job as stored and returns what should happen: a
:class:`Transition` (the new state plus its effects: a message to publish, a
parking-lot copy; the event is whatever the new status announces) or, when a
worker is handed a message, a decision (:func:`admit`). Nothing here does I/O;
:mod:`conveyor_kernel.commit` applies transitions, so the whole machine is
unit-tested without servers.

States: ``scheduled``/``queued`` → ``running`` → ``completed`` | ``retrying``
(→ ``running`` again) | ``failed`` (parked; :func:`redrive` → ``queued``) |
``cancelled``. A fast attempt is never written as ``running``: the worker keeps
that state in memory and the finishing write records the attempt (see
:func:`admit`); an attempt still running after a short threshold, or one of a
redelivered message, is recorded so that a lost worker shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from conveyor_kernel.model import (
    Attempt,
    AttemptOutcome,
    DeadLetter,
    Job,
    JobEnvelope,
    JobStatus,
    budget_spent,
)


@dataclass(frozen=True)
class Transition:
    job: Job  # the state to write (compare-and-set on ``rev``)
    publish: bool = False  # publish ``job.envelope()`` once written (retry, redrive)
    park: bool = False  # put a copy in the parking lot once written


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the executor reports it."""

    outcome: AttemptOutcome
    result: object = None
    error: str | None = None
    permanent: bool = False
    error_type: str | None = None
    traceback: str | None = None  # the tail, for the attempt record


@dataclass(frozen=True)
class Run:
    job: Job  # as stored (``rev`` is what the next write compares against)
    attempt: Attempt
    running: Job  # ``job`` with the attempt open and status ``running``
    record_now: bool  # write ``running`` before the handler starts


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Write:
    """Write this transition instead of running (then the message is done)."""

    reason: str
    transition: Transition


@dataclass(frozen=True)
class Repair:
    """A redelivered message whose outcome is already stored: re-send its effects
    (the worker that wrote it died before they were confirmed)."""

    reason: str
    transition: Transition


@dataclass(frozen=True)
class Defer:
    """The attempt this message carries is still running in a live worker (the
    message came back because a channel closed under it, e.g. RabbitMQ's consumer
    timeout): publish a ``watch`` copy that checks again later, and never run it
    twice."""

    reason: str


Decision = Run | Skip | Write | Repair | Defer


def _close(job: Job, now: datetime, outcome: Outcome) -> list[Attempt]:
    attempts = list(job.attempts)
    last = attempts[-1]
    attempts[-1] = last.model_copy(
        update={
            "finished_at": now,
            "outcome": outcome.outcome,
            "error": outcome.error,
            "duration_s": round((now - last.started_at).total_seconds(), 3),
            "error_type": outcome.error_type,
            "traceback": outcome.traceback,
        }
    )
    return attempts


def _landed(job: Job, env: JobEnvelope) -> bool:
    """Did the attempt this message carries already end (its effects may be unsent)?"""
    if not job.attempts or job.open_attempt is not None:
        return False
    if job.status is JobStatus.RETRYING:
        return job.next_attempt == env.attempt + 1
    return job.status.finished and job.next_attempt == env.attempt


def effects_of(job: Job) -> Transition:
    """What a stored job's last transition sends (for :class:`Repair`)."""
    return Transition(
        job,
        publish=job.status is JobStatus.RETRYING,
        park=job.status is JobStatus.FAILED and job.dead_letter is not None,
    )


def admit(
    job: Job | None,
    env: JobEnvelope,
    worker: str,
    now: datetime,
    *,
    redelivered: bool,
    holder_alive: bool = False,
    session: str | None = None,
) -> Decision:
    """What a worker does with the message ``env`` for ``job``.

    ``redelivered`` covers ``watch`` copies too; ``holder_alive`` says whether the
    worker of the job's open attempt still lives (checked only when it matters).
    """
    if job is None:
        return Skip("job not found (deleted)")
    if env.watch and _landed(job, env):
        # The live worker finished it and sent its effects before it acked (its ack
        # went to a closed channel); nothing is missing.
        return Skip("the watched attempt has ended")
    if redelivered and _landed(job, env):
        return Repair("redelivered after its outcome was stored", effects_of(job))
    if job.status.finished:
        return Skip(f"job already {job.status.value}")
    if job.cancel_requested_at is not None:
        # Cancelled while running in a worker that died or missed the signal.
        return Write("cancellation requested; marked cancelled", cancel(job, now))
    if env.attempt != job.next_attempt:
        return Skip(f"stale message for attempt {env.attempt}; job is at {job.next_attempt}")
    base = job
    if job.open_attempt is not None:
        if not redelivered:
            return Skip("duplicate delivery of an attempt that is running")
        if holder_alive:
            return Defer("the attempt is still running in a live worker")
        lost = Outcome(AttemptOutcome.LOST, error="worker lost mid-attempt; message redelivered")
        base = job.model_copy(update={"attempts": _close(job, now, lost)})
        if base.budget_used > base.max_retries:
            return Write(
                "retries exhausted by lost attempts; marked failed",
                _fail(
                    base, now, "retries exhausted (worker lost mid-attempt)", "retries exhausted"
                ),
            )
    attempt = Attempt(number=len(base.attempts) + 1, worker=worker, started_at=now, session=session)
    return Run(
        job=base,
        attempt=attempt,
        running=_running(base, attempt),
        record_now=redelivered,
    )


def _running(job: Job, attempt: Attempt) -> Job:
    return job.model_copy(
        update={
            "status": JobStatus.RUNNING,
            "attempts": [*job.attempts, attempt],
            "started_at": job.started_at or attempt.started_at,
            "next_attempt_at": None,
            "updated_at": attempt.started_at,
        }
    )


def _with_attempt_open(job: Job, attempt: Attempt) -> Job | None:
    """``job`` with our ``attempt`` open: as stored (it was recorded), rebuilt (it
    never was), or ``None`` when someone else closed it or moved the job on."""
    last = job.attempts[-1] if job.attempts else None
    if (
        last is not None
        and last.number == attempt.number
        and last.worker == attempt.worker
        and last.started_at == attempt.started_at
    ):
        return job if last.finished_at is None and not job.status.finished else None
    if (
        job.status.finished
        or job.open_attempt is not None
        or job.cancel_requested_at is not None
        or len(job.attempts) != attempt.number - 1
    ):
        return None
    return _running(job, attempt)


def finish(
    job: Job, attempt: Attempt, outcome: Outcome, now: datetime, *, rand: float
) -> Transition | None:
    """Close ``attempt`` with ``outcome``; ``None`` if it is no longer ours to close.

    ``rand`` (uniform in [0, 1)) drives the backoff jitter of a retry.
    """
    current = _with_attempt_open(job, attempt)
    if current is None:
        return None
    attempts = _close(current, now, outcome)
    update: dict[str, object] = {"attempts": attempts, "updated_at": now}
    if outcome.outcome is AttemptOutcome.COMPLETED:
        update |= {
            "status": JobStatus.COMPLETED,
            "result": outcome.result,
            "error": None,
            "finished_at": now,
            "expires_at": now + timedelta(seconds=current.retention_s),
        }
        return Transition(current.model_copy(update=update))
    if outcome.outcome is AttemptOutcome.CANCELLED:
        return cancel(current.model_copy(update={"attempts": attempts}), now)
    if outcome.outcome is AttemptOutcome.INTERRUPTED:
        # Shutdown: the message is requeued as it is and runs again; no budget spent.
        return Transition(current.model_copy(update=update | {"status": JobStatus.QUEUED}))
    closed = current.model_copy(update=update)
    used = budget_spent(attempts[current.budget_from :])
    if outcome.permanent or used > current.max_retries:
        reason = "permanent error" if outcome.permanent else "retries exhausted"
        return _fail(closed, now, outcome.error, reason)
    delay = current.backoff.delay_s(used, rand)
    retrying = closed.model_copy(
        update={
            "status": JobStatus.RETRYING,
            "error": outcome.error,
            "next_attempt": current.next_attempt + 1,
            "next_attempt_at": now + timedelta(seconds=delay),
        }
    )
    return Transition(retrying, publish=True)


def _fail(job: Job, now: datetime, error: str | None, reason: str) -> Transition:
    failed = job.model_copy(
        update={
            "status": JobStatus.FAILED,
            "error": error,
            "finished_at": now,
            "updated_at": now,
            "dead_letter": DeadLetter(reason=reason, at=now),
            "expires_at": None,  # a dead letter stays until redriven or purged
        }
    )
    return Transition(failed, park=True)


def cancel(job: Job, now: datetime) -> Transition:
    """``cancelled`` on request; an attempt still open is closed as cancelled."""
    attempts = job.attempts
    if job.open_attempt is not None:
        attempts = _close(job, now, Outcome(AttemptOutcome.CANCELLED, error="cancelled"))
    return Transition(
        job.model_copy(
            update={
                "status": JobStatus.CANCELLED,
                "attempts": attempts,
                "finished_at": now,
                "updated_at": now,
                "cancel_requested_at": job.cancel_requested_at or now,
                "next_attempt_at": None,
                "error": "cancelled by request",
                "expires_at": now + timedelta(seconds=job.retention_s),
            }
        )
    )


def request_cancel(job: Job, now: datetime) -> Transition:
    """A running job: record the request (the worker is signalled after the write)."""
    return Transition(job.model_copy(update={"cancel_requested_at": now, "updated_at": now}))


def redrive(job: Job, now: datetime) -> Transition:
    """Out of the dead letters: ``queued`` again, the next attempt, a fresh budget."""
    fresh = job.model_copy(
        update={
            "status": JobStatus.QUEUED,
            "dead_letter": None,
            "error": None,
            "result": None,
            "finished_at": None,
            "next_attempt_at": None,
            "next_attempt": job.next_attempt + 1,
            "budget_from": len(job.attempts),
            "updated_at": now,
            "expires_at": None,
        }
    )
    return Transition(fresh, publish=True)
