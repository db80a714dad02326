"""Closing an attempt: the finishing write, retried on a lost compare-and-set, and
an outcome the store refuses turned into a permanent, storable failure."""

from __future__ import annotations

import random

from conveyor_kernel.commit import Committer
from conveyor_kernel.errors import ContentionError, DocumentRefusedError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.machine import Outcome, Run, finish
from conveyor_kernel.model import AttemptOutcome, Job, JobStatus, utcnow
from conveyor_kernel.store import JobStore
from conveyor_worker.metrics import WorkerMetrics

log = get_logger(__name__)
_jitter = random.SystemRandom()  # backoff jitter, not crypto

UNSTORABLE = "UnstorableOutcome"
MAX_CAS_ROUNDS = 20


class OutcomeWriter:
    def __init__(self, store: JobStore, committer: Committer, metrics: WorkerMetrics) -> None:
        self._store = store
        self._committer = committer
        self._metrics = metrics

    async def record(self, run: Run, base: Job | None, outcome: Outcome) -> Job | None:
        """Close the attempt with ``outcome`` (``base``: the job as last written, or
        ``None`` if unknown); returns the stored job, or ``None`` if it was no
        longer ours to close (cancelled or deleted meanwhile)."""
        duration_s = (utcnow() - run.attempt.started_at).total_seconds()
        stored: Job | None = None
        job = base
        for _ in range(MAX_CAS_ROUNDS):
            if job is None:
                job = await self._store.get(run.job.id)
                if job is None:
                    break
            transition = finish(job, run.attempt, outcome, utcnow(), rand=_jitter.random())
            if transition is None:
                break
            try:
                stored = await self._committer.apply(transition, durable=False)
            except DocumentRefusedError as exc:
                if outcome.error_type == UNSTORABLE:
                    raise  # even the bare failure is refused: park the message
                # The outcome (e.g. an error text) cannot be stored: fail for good, saying so.
                log.warning("outcome refused by the store; failing the job", error=str(exc))
                outcome = Outcome(
                    AttemptOutcome.FAILED,
                    error=f"the attempt's outcome could not be stored: {exc}"[:1000],
                    permanent=True,
                    error_type=UNSTORABLE,
                )
                continue
            if stored is not None:
                break
            job = None
        else:
            raise ContentionError(f"job {run.job.id}: gave up after {MAX_CAS_ROUNDS} CAS rounds")
        self._metrics.attempt_finished(
            run.job.type, outcome.outcome, outcome.error_type, stored, duration_s
        )
        if stored is not None:
            self.count_parked(stored)
        log.debug(
            "attempt finished",
            outcome=outcome.outcome.value,
            error=outcome.error,
            status=stored.status.value if stored else None,
            next_attempt_at=stored.next_attempt_at.isoformat()
            if stored and stored.next_attempt_at
            else None,
        )
        return stored

    def count_parked(self, job: Job) -> None:
        if job.status is JobStatus.FAILED and job.dead_letter is not None:
            self._metrics.dead_lettered.labels(job.type, job.dead_letter.reason).inc()
