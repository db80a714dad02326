"""``--preload N``: N finished jobs stored before a run, in bulk (``insert_many``).

They are real job documents (built from the kernel's model, so their shape and
derived fields are what the services write), created over the last day with one
attempt each: completed ``echo`` (89 %) and ``report-gen`` (10 %) jobs kept for
the default retention, and ``fail`` jobs (1 %) that failed for good and are
dead letters. The services never touch them during the run, so a run with them
measures what the stored jobs alone cost: nothing, if no work reads every job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

from conveyor_kernel.counts import JobCounts, Tally
from conveyor_kernel.listing import JobIndex
from conveyor_kernel.model import (
    DEFAULT_RETENTION_S,
    Attempt,
    AttemptOutcome,
    DeadLetter,
    Job,
    JobStatus,
    JobSubmission,
    new_job_id,
    utcnow,
)
from conveyor_kernel.store import JOBS_COLLECTION

CHUNK = 1000
SPAN = timedelta(days=1)  # created over the last day


def _finished(type_: str, status: JobStatus) -> Job:
    now = utcnow()
    job = Job.from_submission(JobSubmission(type=type_, payload={"i": 0}), default_timeout_s=30)
    failed = status is JobStatus.FAILED
    attempt = Attempt(
        number=1,
        worker="preload",
        started_at=now,
        finished_at=now,
        outcome=AttemptOutcome.FAILED if failed else AttemptOutcome.COMPLETED,
        error="boom" if failed else None,
        duration_s=0.001,
    )
    return job.model_copy(
        update={
            "status": status,
            "attempts": [attempt],
            "result": None if failed else {"echo": {"i": 0}},
            "error": "boom" if failed else None,
            "dead_letter": DeadLetter(reason="permanent error", at=now) if failed else None,
            "finished_at": now,
            "rev": 2,
        }
    )


def _kind(i: int) -> tuple[str, JobStatus]:
    """1 % failed dead letters (``fail``), 10 % ``report-gen``, the rest ``echo``."""
    if i % 100 == 0:
        return "fail", JobStatus.FAILED
    return ("report-gen" if i % 10 == 5 else "echo"), JobStatus.COMPLETED


@dataclass(frozen=True)
class Preloaded:
    seconds: float
    completed: int  # of them


async def preload(mongo: AsyncMongoClient[dict[str, Any]], db: str, n: int) -> Preloaded:
    """Insert ``n`` finished jobs (and their counts). Each document is the model's
    own (``to_document``), derived fields included."""
    jobs = mongo[db][JOBS_COLLECTION]
    templates = {k: _finished(*k) for k in (_kind(0), _kind(5), _kind(1))}
    now, tally, index = utcnow(), Tally(), JobIndex(mongo, db)
    t0 = time.perf_counter()
    for first in range(0, n, CHUNK):
        batch: list[Job] = []
        for i in range(first, min(n, first + CHUNK)):
            type_, status = _kind(i)
            created = now - SPAN + SPAN * (i / max(n, 1))
            keep = None if status is JobStatus.FAILED else timedelta(seconds=DEFAULT_RETENTION_S)
            job = templates[(type_, status)].model_copy(
                update={
                    "id": new_job_id(),
                    "payload": {"i": i},
                    "created_at": created,
                    "updated_at": created,
                    "finished_at": created,
                    "expires_at": None if keep is None else created + keep,
                }
            )
            batch.append(job)
            tally.add(status, type_)
        await index.note(batch)  # as the job store does: lists find them
        await jobs.insert_many([j.to_document() for j in batch], ordered=False)
    completed = sum(v for (s, _), v in tally.pending().items() if s == JobStatus.COMPLETED)
    await JobCounts(mongo, db).flush(tally)
    return Preloaded(time.perf_counter() - t0, completed)
