"""Worker metrics (served on ``CONVEYOR_METRICS_PORT`` by :mod:`conveyor_kernel.ops`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from conveyor_kernel import __version__
from conveyor_kernel.metrics import DURATION_BUCKETS, WAIT_BUCKETS, new_registry
from conveyor_kernel.model import AttemptOutcome, Job, JobEnvelope, JobStatus, utcnow

# The job's status after an attempt, as the ``outcome`` label (queued again = interrupted).
OUTCOME_OF_STATUS = {JobStatus.QUEUED: "interrupted"}


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry: CollectorRegistry = new_registry("worker", __version__)
        r = self.registry
        self.processed = Counter(
            "conveyor_jobs_processed_total",
            "Attempts finished, by job type and the job's outcome "
            "(completed, retrying, failed, cancelled, interrupted)",
            ["type", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "conveyor_job_attempts_total", "Attempts started, by job type", ["type"], registry=r
        )
        self.retries = Counter(
            "conveyor_job_retries_total", "Retries scheduled, by job type", ["type"], registry=r
        )
        self.dead_lettered = Counter(
            "conveyor_jobs_dead_lettered_total",
            "Jobs parked after their final failure, by type and reason",
            ["type", "reason"],
            registry=r,
        )
        self.errors = Counter(
            "conveyor_job_errors_total",
            "Failed attempts by job type and handler exception type",
            ["type", "error_type"],
            registry=r,
        )
        self.duration = Histogram(
            "conveyor_job_duration_seconds",
            "Attempt run time, by job type",
            ["type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "conveyor_job_queue_wait_seconds",
            "From when an attempt was due (enqueued, or its backoff/schedule ended) to its start",
            ["type"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "conveyor_worker_jobs_in_flight",
            "Job messages being handled by this process",
            registry=r,
        )
        self.unexpected = Counter(
            "conveyor_worker_message_errors_total",
            "Messages requeued after an unexpected error (a bug: see the logs)",
            registry=r,
        )
        self.skipped = Counter(
            "conveyor_worker_messages_skipped_total",
            "Messages acked without running (duplicates, stale attempts, deleted jobs)",
            registry=r,
        )
        self.progress_reports = Counter(
            "conveyor_job_progress_reports_total",
            "ctx.progress calls, by job type",
            ["type"],
            registry=r,
        )
        self.progress_writes = Counter(
            "conveyor_job_progress_writes_total",
            "Progress reports written to the store (at most one a second per job), by job type",
            ["type"],
            registry=r,
        )
        self.poison = Counter(
            "conveyor_worker_poison_messages_total",
            "Messages that were not a valid job envelope",
            registry=r,
        )

    def attempt_started(self, env: JobEnvelope) -> None:
        self.attempts.labels(env.type).inc()
        due = env.not_before or env.enqueued_at
        self.queue_wait.labels(env.type).observe(max(0.0, (utcnow() - due).total_seconds()))

    def attempt_finished(
        self,
        job_type: str,
        outcome: AttemptOutcome,
        error_type: str | None,
        stored: Job | None,
        duration_s: float,
    ) -> None:
        self.duration.labels(job_type).observe(duration_s)
        if outcome in {AttemptOutcome.FAILED, AttemptOutcome.TIMEOUT}:
            self.errors.labels(job_type, error_type or outcome.value).inc()
        if stored is None:
            return  # nothing recorded (the job was deleted or closed by someone else)
        result = OUTCOME_OF_STATUS.get(stored.status, stored.status.value)
        self.processed.labels(job_type, result).inc()
        if stored.status is JobStatus.RETRYING:
            self.retries.labels(job_type).inc()
