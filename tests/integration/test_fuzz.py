"""Schemathesis against the live OpenAPI, authenticated: no 5xx, every documented
response matches its schema, and no request that was refused left a job behind.

A schedule the fuzzer created (201) fires jobs of its own while the run goes on
(``*/5 * * * *`` is the documented example): those carry its ``schedule_id`` and
count as accepted through that 201, nothing else does.

Bounded: ``--max-examples`` per operation and a time budget, a fixed seed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from conveyor_kernel.mongo import Document
from tests.stack import ADMIN_KEY, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

MAX_EXAMPLES = 6
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
CREATES_JOBS = ("/v1/jobs", "/v1/jobs/batch", "/retry")


def accepted_ids(har: dict[str, Any], endings: tuple[str, ...]) -> set[str]:
    """Ids that 2xx answers of POSTs to paths ending in ``endings`` handed out."""
    ids: set[str] = set()
    for entry in har["log"]["entries"]:
        request, response = entry["request"], entry["response"]
        path = request["url"].split("?", 1)[0]
        if request["method"] != "POST" or not path.endswith(endings):
            continue
        if not 200 <= response["status"] < 300:
            continue
        body = json.loads(response["content"].get("text") or "{}")
        ids.update(body.get("ids") or [])
        if "id" in body:
            ids.add(body["id"])
    return ids


async def test_fuzzing_finds_no_5xx_and_no_refused_job_is_stored(
    stack: Stack, tmp_path: Path, mongo: AsyncMongoClient[Document]
) -> None:
    await stack.start_api()
    assert stack.api_url is not None
    report = tmp_path / "schemathesis"
    cli = Path(sys.executable).parent / "schemathesis"
    run = subprocess.run(
        [
            str(cli),
            "run",
            f"{stack.api_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {ADMIN_KEY}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing",  # examples: the documented ones (type "echo")
            "--seed",
            "20261129",
            "--max-time",
            "240",
            "--request-timeout",
            "30",
            "--report",
            "har,junit",
            "--report-dir",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    output = run.stdout + run.stderr
    print(output[-6000:])
    assert run.returncode == 0, output[-6000:]
    (har_path,) = report.glob("har-*.json")
    har = json.loads(har_path.read_text())
    statuses = [e["response"]["status"] for e in har["log"]["entries"]]
    assert statuses, "schemathesis sent no request"
    assert not [s for s in statuses if s >= 500]
    stored = {
        d["_id"]: d.get("schedule_id")
        async for d in mongo[stack.db_name]["jobs"].find({}, {"_id": 1, "schedule_id": 1})
    }
    accepted = accepted_ids(har, CREATES_JOBS)
    assert accepted, "no job was accepted: the fuzzing never reached the success paths"
    schedules = accepted_ids(har, ("/v1/schedules",))
    fired = {job for job, schedule in stored.items() if schedule in schedules}
    assert set(stored) - fired <= accepted, "a refused request left a job behind"
    print(f"schemathesis: {len(statuses)} requests, statuses {sorted(set(statuses))}")
