"""``--preload N``: N finished jobs stored before a run, in bulk (``insert_many``).

They are real job documents (built from the kernel's model, so their shape and
derived fields are what the services write): completed ``echo`` jobs with one
attempt and a result, created over the last day, kept for the default
retention. The services never touch them during the run, so a run with them
measures what the stored jobs alone cost: nothing, if no work reads every job.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

from conveyor_kernel.counts import JobCounts, Tally
from conveyor_kernel.model import (
    DEFAULT_RETENTION_S,
    Attempt,
    AttemptOutcome,
    Job,
    JobStatus,
    JobSubmission,
    expiry_bucket,
    new_job_id,
    utcnow,
)
from conveyor_kernel.store import JOBS_COLLECTION

CHUNK = 1000
SPAN = timedelta(days=1)  # created over the last day


def _template() -> dict[str, Any]:
    now = utcnow()
    job = Job.from_submission(JobSubmission(type="echo", payload={"i": 0}), default_timeout_s=30)
    attempt = Attempt(
        number=1,
        worker="preload",
        started_at=now,
        finished_at=now,
        outcome=AttemptOutcome.COMPLETED,
        duration_s=0.001,
    )
    done = job.model_copy(
        update={
            "status": JobStatus.COMPLETED,
            "attempts": [attempt],
            "result": {"echo": {"i": 0}},
            "finished_at": now,
            "expires_at": now + timedelta(seconds=DEFAULT_RETENTION_S),
            "rev": 2,
        }
    )
    return done.to_document()


async def preload(mongo: AsyncMongoClient[dict[str, Any]], db: str, n: int) -> float:
    """Insert ``n`` finished jobs (and their counts); returns the seconds it took."""
    jobs = mongo[db][JOBS_COLLECTION]
    template, now = _template(), utcnow()
    t0 = time.perf_counter()
    for first in range(0, n, CHUNK):
        docs = []
        for i in range(first, min(n, first + CHUNK)):
            created = now - SPAN + SPAN * (i / max(n, 1))
            expires = created + timedelta(seconds=DEFAULT_RETENTION_S)
            doc = dict(template)
            doc |= {
                "_id": new_job_id(),
                "payload": {"i": i},
                "result": {"echo": {"i": i}},
                "created_at": created,
                "updated_at": created,
                "finished_at": created,
                "expires_at": expires,
                "expires_bucket": expiry_bucket(expires),
            }
            docs.append(doc)
        await jobs.insert_many(docs, ordered=False)
    tally = Tally()
    tally.add(JobStatus.COMPLETED, "echo", n)
    await JobCounts(mongo, db).flush(tally)
    return time.perf_counter() - t0
