"""The job mix and the requests that carry it.

70 % ``echo``; 15 % ``sleep`` of 0.05-2 s; 10 % ``fail`` (fails until its last
allowed attempt, then completes); 4 % ``fail-absolute`` (always fails: parked);
1 % ``echo`` scheduled 5-30 s ahead. 5 % ask for a webhook. Half the jobs go in
single POSTs and half in batches; every request carries an ``Idempotency-Key``
(clients retry with it), and every tenth is sent twice more on purpose.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

BATCH_SIZE = 20
FAIL_RETRIES = 2
ABSOLUTE_RETRIES = 1


@dataclass(frozen=True)
class Planned:
    kind: str  # echo | sleep | fail | fail-absolute | scheduled
    body: dict[str, Any]
    webhook: bool

    @property
    def expected_status(self) -> str:
        return "failed" if self.kind == "fail-absolute" else "completed"


@dataclass
class Request:
    key: str
    jobs: list[Planned]
    batch: bool
    resend: bool  # sent twice more after it was accepted
    job_ids: list[str] = field(default_factory=list)  # from the first accepted answer
    answers: list[list[str]] = field(default_factory=list)  # ids of every accepted answer

    @property
    def path(self) -> str:
        return "/v1/jobs/batch" if self.batch else "/v1/jobs"

    @property
    def json(self) -> dict[str, Any]:
        if self.batch:
            return {"jobs": [p.body for p in self.jobs]}
        return self.jobs[0].body


def _job(rng: random.Random, webhook_url: str, i: int) -> Planned:
    roll = rng.random()
    body: dict[str, Any]
    if roll < 0.70:
        kind, body = "echo", {"type": "echo", "payload": {"i": i}}
    elif roll < 0.85:
        seconds = round(rng.uniform(0.05, 2.0), 3)
        kind, body = "sleep", {"type": "sleep", "payload": {"seconds": seconds, "i": i}}
    elif roll < 0.95:
        kind = "fail"
        body = {"type": "fail", "payload": {"i": i}, "max_retries": FAIL_RETRIES}
        body["backoff"] = {"base_s": 0.2, "factor": 2, "max_s": 2}
    elif roll < 0.99:
        kind = "fail-absolute"
        body = {"type": "fail-absolute", "payload": {"i": i}, "max_retries": ABSOLUTE_RETRIES}
        body["backoff"] = {"base_s": 0.2, "factor": 2, "max_s": 2}
    else:
        kind = "scheduled"
        body = {"type": "echo", "payload": {"i": i}, "delay_s": round(rng.uniform(5, 30), 1)}
    webhook = rng.random() < 0.05
    if webhook:
        body["notify"] = {
            "webhook": {"url": webhook_url, "events": ["job.completed", "job.failed"]}
        }
    return Planned(kind, body, webhook)


def plan(jobs: int, seed: int, webhook_url: str, run_id: str) -> list[Request]:
    """``jobs`` jobs in requests, in submission order."""
    rng = random.Random(seed)
    planned = [_job(rng, webhook_url, i) for i in range(jobs)]
    requests: list[Request] = []
    i = 0
    while i < len(planned):
        # 1 request in BATCH_SIZE + 1 is a batch: about half the jobs go in batches
        batch = rng.random() < 1 / (BATCH_SIZE + 1) and len(planned) - i >= BATCH_SIZE
        size = BATCH_SIZE if batch else 1
        requests.append(
            Request(
                key=f"chaos-{run_id}-{len(requests)}",
                jobs=planned[i : i + size],
                batch=batch,
                resend=rng.random() < 0.1,
            )
        )
        i += size
    return requests
