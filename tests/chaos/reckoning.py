"""The reckoning: what was accepted, where every job ended, and the invariants.

Read from the store the API writes to (every job of the run's database, not
only the accepted ones, so a job nobody was told about shows up as a
duplicate), from ``/v1/dead-letters`` and from the webhook receiver.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from pymongo import AsyncMongoClient
from standardwebhooks import Webhook

from conveyor_kernel.mongo import Document
from conveyor_kernel.store import JOBS_COLLECTION
from tests.chaos.mix import Request
from tests.receivers import Received

TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Reckoning:
    submitted: int = 0
    accepted: int = 0
    refused: int = 0
    terminal: dict[str, int] = field(default_factory=dict)
    lost: int = 0  # accepted, not terminal by the deadline
    duplicated_completions: int = 0  # jobs with two completed attempts
    duplicated_keys: int = 0  # an idempotency key answered with two different job sets
    unaccepted_jobs: int = 0  # stored jobs no answer named (a retried request ran twice)
    wrong_status: int = 0  # ended otherwise than its type must
    lost_attempts: int = 0
    retries: int = 0
    failed_by_lost_attempts: int = 0
    expected_parked: int = 0
    parked: int = 0
    parked_listed: int = 0
    webhooks_expected: int = 0
    webhooks_received: int = 0
    webhooks_duplicates: int = 0
    webhooks_missing: int = 0
    webhooks_bad_signatures: int = 0
    recovery_s: float | None = None  # last fault to every job terminal
    wall_s: float = 0.0
    faults: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def check(self) -> None:
        rules = {
            "every request accepted": self.accepted == self.submitted and self.refused == 0,
            "lost == 0": self.lost == 0,
            "duplicated effects == 0": self.duplicated_completions == 0
            and self.duplicated_keys == 0
            and self.unaccepted_jobs == 0,
            "statuses as the job types demand": self.wrong_status == 0,
            "parked == fail-absolute (+ failed by lost attempts)": self.parked
            == self.expected_parked + self.failed_by_lost_attempts,
            "every parked job in /v1/dead-letters": self.parked_listed == self.parked,
            "every expected webhook arrived": self.webhooks_missing == 0,
            "every webhook signature verifies": self.webhooks_bad_signatures == 0,
        }
        self.violations = [name for name, ok in rules.items() if not ok]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def rows(self) -> list[tuple[str, str, str]]:
        """(figure, value, invariant) for the printed table."""
        return [
            ("submitted jobs", str(self.submitted), ""),
            ("accepted (202/200)", str(self.accepted), "= submitted"),
            ("refused requests", str(self.refused), "0"),
            *[(f"terminal: {k}", str(v), "") for k, v in sorted(self.terminal.items())],
            ("lost (accepted, not terminal)", str(self.lost), "0"),
            ("jobs completed twice", str(self.duplicated_completions), "0"),
            ("idempotency keys -> two job sets", str(self.duplicated_keys), "0"),
            ("stored jobs no answer named", str(self.unaccepted_jobs), "0"),
            ("ended in the wrong status", str(self.wrong_status), "0"),
            ("attempts marked lost", str(self.lost_attempts), "counted"),
            ("retries", str(self.retries), "counted"),
            ("failed by lost attempts", str(self.failed_by_lost_attempts), "counted"),
            ("parked", str(self.parked), f"= {self.expected_parked} fail-absolute (+ above)"),
            ("parked listed by /v1/dead-letters", str(self.parked_listed), "= parked"),
            ("webhooks expected", str(self.webhooks_expected), ""),
            ("webhooks received (unique)", str(self.webhooks_received), "= expected"),
            ("webhook duplicates", str(self.webhooks_duplicates), "counted"),
            ("webhook signatures failing", str(self.webhooks_bad_signatures), "0"),
            ("last fault -> all terminal (s)", _fmt(self.recovery_s), ""),
            ("wall time (s)", f"{self.wall_s:.1f}", ""),
        ]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


async def stored_jobs(mongo: AsyncMongoClient[Document], db: str) -> dict[str, Document]:
    cursor = mongo[db][JOBS_COLLECTION].find(
        {}, {"_id": 1, "status": 1, "attempts.outcome": 1, "type": 1, "dead_letter": 1}
    )
    return {doc["_id"]: doc async for doc in cursor}


async def listed_dead_letters(client: httpx.AsyncClient) -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/dead-letters", params=params)).json()
        ids |= {item["job_id"] for item in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return ids


def reckon_jobs(rec: Reckoning, requests: list[Request], jobs: dict[str, Document]) -> None:
    planned = {jid: p for r in requests for jid, p in zip(r.job_ids, r.jobs, strict=False)}
    rec.submitted = sum(len(r.jobs) for r in requests)
    rec.accepted = len(planned)
    rec.duplicated_keys = sum(1 for r in requests if len({tuple(a) for a in r.answers}) > 1)
    rec.unaccepted_jobs = len(set(jobs) - set(planned))
    statuses: Counter[str] = Counter()
    for jid, p in planned.items():
        doc = jobs.get(jid)
        status = doc["status"] if doc else "missing"
        statuses[status] += 1
        if status not in TERMINAL:
            rec.lost += 1
            continue
        assert doc is not None
        outcomes = [a.get("outcome") for a in doc.get("attempts", [])]
        rec.duplicated_completions += outcomes.count("completed") > 1
        rec.lost_attempts += outcomes.count("lost")
        rec.retries += max(0, len(outcomes) - 1)
        by_lost = status == "failed" and p.kind != "fail-absolute" and "lost" in outcomes
        rec.failed_by_lost_attempts += by_lost
        rec.wrong_status += status != p.expected_status and not by_lost
        rec.expected_parked += p.kind == "fail-absolute"
        rec.parked += status == "failed" and bool(doc.get("dead_letter"))
    rec.terminal = {k: v for k, v in statuses.items() if k in TERMINAL}


def reckon_webhooks(
    rec: Reckoning,
    requests: list[Request],
    jobs: dict[str, Document],
    received: list[Received],
    secret: str,
) -> None:
    expected = {
        (jid, f"job.{jobs[jid]['status']}")
        for r in requests
        for jid, p in zip(r.job_ids, r.jobs, strict=False)
        if p.webhook and jid in jobs and jobs[jid]["status"] in TERMINAL
    }
    seen: Counter[tuple[str, str]] = Counter()
    for request in received:
        try:
            payload = Webhook(secret).verify(request.body, request.headers)
        except Exception:  # noqa: BLE001 - any failure to verify counts
            rec.webhooks_bad_signatures += 1
            continue
        seen[(payload["data"]["id"], payload["type"])] += 1
    rec.webhooks_expected = len(expected)
    rec.webhooks_received = len(set(seen) & expected)
    rec.webhooks_missing = len(expected - set(seen))
    rec.webhooks_duplicates = sum(n - 1 for n in seen.values())
