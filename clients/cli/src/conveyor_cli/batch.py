"""``conveyor submit-file``: a JSONL file of submissions, sent in batches.

``POST /v1/jobs/batch`` takes up to 1,000 jobs and is all or nothing: a bad job
(the answer names its ``index``) refuses the whole batch. Lines that are not a
JSON object with a ``type`` never leave this machine; a line the API refuses is
reported and its batch re-sent without it. Each try carries an
``Idempotency-Key``, so re-sending after a ``503`` or a lost answer cannot
create a batch twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from conveyor_cli import output
from conveyor_cli.client import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    BadInputError,
    Client,
    UnavailableError,
)
from conveyor_cli.runtime import fail_usage, run, settings

MAX_BATCH = 1000  # routes/batch.py MAX_BATCH
MAX_BODY_BYTES = 8 * 1024 * 1024  # half of CONVEYOR_MAX_BATCH_REQUEST_BYTES' default
UNAVAILABLE_TRIES = 4
UNAVAILABLE_BACKOFF_S = 1.0


@dataclass
class Line:
    number: int
    job: dict[str, Any]
    size: int


@dataclass
class Report:
    lines: int = 0
    jobs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None

    def fail(self, line: int, code: str, message: str) -> None:
        self.errors.append({"line": line, "code": code, "message": message})

    def as_json(self) -> dict[str, Any]:
        errors = sorted(self.errors, key=lambda e: int(e["line"]))
        return {
            "lines": self.lines,
            "accepted": len(self.jobs),
            "jobs": self.jobs,
            "errors": errors,
            "stopped": self.stopped,
        }


def parse(text: str, report: Report) -> list[Line]:
    """The submissions of a JSONL text; malformed lines go to ``report``."""
    found: list[Line] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        report.lines += 1
        try:
            job = json.loads(raw)
        except ValueError as exc:
            report.fail(number, "invalid_json", f"not valid JSON: {exc}")
            continue
        if not isinstance(job, dict) or not isinstance(job.get("type"), str):
            report.fail(number, "invalid_submission", 'not a JSON object with a "type"')
            continue
        found.append(Line(number, job, len(raw.encode())))
    return found


def chunks(lines: list[Line], batch_size: int) -> list[list[Line]]:
    out: list[list[Line]] = []
    current: list[Line] = []
    size = 0
    for line in lines:
        if current and (len(current) >= batch_size or size + line.size > MAX_BODY_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(line)
        size += line.size + 1
    if current:
        out.append(current)
    return out


def bad_indices(error: BadInputError) -> dict[int, str]:
    """Which jobs of a refused batch are at fault: ``{index: message}``."""
    body = error.body
    if isinstance(body.get("index"), int):
        return {body["index"]: error.message}
    found: dict[int, list[str]] = {}
    for detail in body.get("details") or []:
        loc = detail.get("loc") if isinstance(detail, dict) else None
        if isinstance(loc, list) and loc[:2] == ["body", "jobs"] and len(loc) > 2:
            index = loc[2]
            if isinstance(index, int):
                where = ".".join(str(p) for p in loc[3:]) or "job"
                found.setdefault(index, []).append(f"{where}: {detail.get('msg')}")
    return {index: "; ".join(messages) for index, messages in found.items()}


async def send(client: Client, batch: list[Line], report: Report, progress: Progress) -> None:
    """Send ``batch``, dropping the lines the API refuses, until it is accepted."""
    pending = list(batch)
    task = progress.task_ids[0] if progress.task_ids else None
    while pending:
        key = f"conveyor-cli-{uuid.uuid4().hex}"  # one per body: re-sends are safe
        try:
            answer = await _post(client, [line.job for line in pending], key)
        except BadInputError as exc:
            faulty = bad_indices(exc)
            if not faulty and exc.status == 413 and len(pending) > 1:
                half = len(pending) // 2
                await send(client, pending[:half], report, progress)
                await send(client, pending[half:], report, progress)
                return
            faulty = faulty or dict.fromkeys(range(len(pending)), exc.message)
            for index, message in sorted(faulty.items()):
                if 0 <= index < len(pending):
                    report.fail(pending[index].number, exc.code or "refused", message)
            pending = [line for i, line in enumerate(pending) if i not in faulty]
            if task is not None:
                progress.advance(task, len(faulty))
            continue
        for line, job_id in zip(pending, answer.get("ids", []), strict=False):
            report.jobs.append({"line": line.number, "id": job_id})
        if task is not None:
            progress.advance(task, len(pending))
        return


async def _post(client: Client, jobs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    for attempt in range(UNAVAILABLE_TRIES):
        try:
            answer: dict[str, Any] = await client.submit_batch(jobs, key)
            return answer
        except UnavailableError:
            if attempt == UNAVAILABLE_TRIES - 1:
                raise
            await asyncio.sleep(UNAVAILABLE_BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


def print_report(report: Report, path: str) -> None:
    for error in sorted(report.errors, key=lambda e: int(e["line"])):
        output.err.print(f"{path}:{error['line']}: {error['message']}", markup=False)
    summary = f"accepted {len(report.jobs)} of {report.lines} jobs from {path}"
    if report.errors:
        count = len(report.errors)
        summary += f"; {count} line{'s' if count > 1 else ''} refused"
    output.out.print(summary, markup=False)
    if report.stopped:
        output.err.print(f"stopped: {report.stopped}", markup=False)


def _read(path: str) -> str:
    return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")


def submit_file(
    ctx: typer.Context,
    path: Annotated[
        str, typer.Argument(metavar="FILE.jsonl", help="One submission per line; -: stdin")
    ],
    batch_size: Annotated[
        int, typer.Option(min=1, max=MAX_BATCH, help="Jobs per request (at most 1,000)")
    ] = 500,
) -> None:
    """Submit every line of a JSONL file (one POST /v1/jobs body per line) in batches.

    Reports the jobs accepted and each refused line by number; exit 2 if any line
    was refused, 5 if the API became unavailable (the report says what was sent).
    """
    opts = settings(ctx)

    async def action(client: Client) -> int:
        try:
            text = await asyncio.to_thread(_read, path)
        except (OSError, UnicodeDecodeError) as exc:
            raise fail_usage(f"cannot read {path}: {exc}") from exc
        report = Report()
        lines = parse(text, report)
        show = not opts.json and output.err.is_terminal
        progress = Progress(
            TextColumn("submitting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=output.err,
            disable=not show,
            transient=True,
        )
        progress.add_task("submit", total=len(lines))
        with progress if show else contextlib.nullcontext():
            for batch in chunks(lines, batch_size):
                try:
                    await send(client, batch, report, progress)
                except UnavailableError as exc:
                    sent = {job["line"] for job in report.jobs}
                    rest = [line.number for line in lines if line.number not in sent]
                    refused = {e["line"] for e in report.errors}
                    first = min((n for n in rest if n not in refused), default=None)
                    report.stopped = f"{exc.message}; lines from {first} on were not sent"
                    break
        if opts.json:
            output.emit_json(report.as_json())
        else:
            print_report(report, path)
        if report.stopped:
            return EXIT_UNAVAILABLE
        return EXIT_USAGE if report.errors else EXIT_OK

    run(ctx, action)
