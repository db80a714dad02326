"""Splitting a JSONL file into batches and blaming the lines the API refused."""

from __future__ import annotations

import pytest

from conveyor_cli import batch
from conveyor_cli.client import BadInputError
from conveyor_cli.jobs import build_submission


def test_parse_keeps_line_numbers_and_reports_malformed_lines() -> None:
    report = batch.Report()
    text = '{"type": "echo"}\n\n{oops\n[1]\n{"payload": {}}\n{"type": "sleep"}\n'
    lines = batch.parse(text, report)
    assert [line.number for line in lines] == [1, 6]
    assert [e["line"] for e in report.errors] == [3, 4, 5]
    assert report.lines == 5


def test_chunks_by_count_and_bytes() -> None:
    lines = [batch.Line(i, {"type": "echo"}, 10) for i in range(1, 8)]
    assert [len(c) for c in batch.chunks(lines, 3)] == [3, 3, 1]
    big = [batch.Line(i, {}, batch.MAX_BODY_BYTES // 2) for i in range(1, 4)]
    assert [len(c) for c in batch.chunks(big, 1000)] == [1, 1, 1]


def test_bad_indices_from_index_or_validation_details() -> None:
    unknown = BadInputError("unknown job type 'x'", status=422, body={"index": 2})
    assert batch.bad_indices(unknown) == {2: "unknown job type 'x'"}
    details = [
        {"loc": ["body", "jobs", 1, "priority"], "msg": "too big"},
        {"loc": ["body", "jobs", 1, "max_retries"], "msg": "too many"},
        {"loc": ["body", "jobs", 4], "msg": "not an object"},
        {"loc": ["body"], "msg": "whole body"},
    ]
    invalid = BadInputError("request is not valid", status=422, body={"details": details})
    assert batch.bad_indices(invalid) == {
        1: "priority: too big; max_retries: too many",
        4: "job: not an object",
    }
    assert batch.bad_indices(BadInputError("nope", status=409)) == {}


def test_build_submission_checks_the_schedule_and_payload() -> None:
    common = {"priority": None, "max_retries": None, "job_timeout": None}
    body = build_submission(
        job_type="echo", payload='{"a": 1}', delay=None, run_at="2030-01-02T03:04:05", **common
    )
    assert body["payload"] == {"a": 1}
    assert body["run_at"].startswith("2030-01-02T03:04:05")
    assert body["run_at"][19:] != ""  # a naive time gets the local offset
    with pytest.raises(BadInputError):
        build_submission(job_type="echo", payload="{}", delay=1, run_at="2030-01-01", **common)
    with pytest.raises(BadInputError):
        build_submission(job_type="echo", payload="[1]", delay=None, run_at=None, **common)
    with pytest.raises(BadInputError):
        build_submission(job_type="echo", payload="{x", delay=None, run_at=None, **common)
