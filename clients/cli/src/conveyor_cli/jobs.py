"""Job commands: submit, get, list, cancel, retry, delete, stats."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from conveyor_cli import output
from conveyor_cli.client import EXIT_JOB_FAILED, EXIT_OK, Client
from conveyor_cli.runtime import fail_usage, read_json_arg, run, settings
from conveyor_cli.stream import wait_for_job

STATUSES = ("scheduled", "queued", "running", "retrying", "completed", "failed", "cancelled")


def _run_at(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise fail_usage(f"--run-at {value!r} is not an ISO 8601 time: {exc}") from exc
    if parsed.tzinfo is None:  # a local wall-clock time
        parsed = parsed.astimezone()
    return parsed.isoformat()


def build_submission(
    *,
    job_type: str,
    payload: str,
    priority: int | None,
    delay: float | None,
    run_at: str | None,
    max_retries: int | None,
    job_timeout: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": job_type, "payload": read_json_arg(payload, "--payload")}
    if not isinstance(body["payload"], dict):
        raise fail_usage('--payload must be a JSON object, e.g. \'{"hello": "world"}\'')
    if delay is not None and run_at is not None:
        raise fail_usage("give --delay or --run-at, not both")
    optional = {
        "priority": priority,
        "delay_s": delay,
        "run_at": _run_at(run_at) if run_at else None,
        "max_retries": max_retries,
        "timeout_s": job_timeout,
    }
    return body | {k: v for k, v in optional.items() if v is not None}


def submit(
    ctx: typer.Context,
    *,
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="Job type, e.g. echo")],
    payload: Annotated[
        str, typer.Option("--payload", "-p", help="JSON object, or @file (@- for stdin)")
    ] = "{}",
    priority: Annotated[
        int | None, typer.Option(min=1, max=10, help="1..10, higher runs first (5)")
    ] = None,
    delay: Annotated[float | None, typer.Option(min=0, help="Run in SECONDS")] = None,
    run_at: Annotated[
        str | None, typer.Option(help="Run at this ISO 8601 time (local if no offset)")
    ] = None,
    max_retries: Annotated[int | None, typer.Option(min=0, max=25, help="Retries (3)")] = None,
    job_timeout: Annotated[
        float | None, typer.Option(help="Per-attempt time limit in seconds")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat-safe submit: same key + body, same job")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Follow the job until it finishes")
    ] = False,
) -> None:
    """Submit a job; with --wait, follow it and exit 1 if it fails or is cancelled."""
    opts = settings(ctx)

    async def action(client: Client) -> int:
        body = build_submission(
            job_type=job_type,
            payload=payload,
            priority=priority,
            delay=delay,
            run_at=run_at,
            max_retries=max_retries,
            job_timeout=job_timeout,
        )
        job = await client.submit(body, idempotency_key)
        if not wait:
            output.print_job(job, opts.json)
            return EXIT_OK
        final = await _follow(client, job, opts.json)
        output.print_job(final, opts.json)
        return EXIT_OK if final.get("status") == "completed" else EXIT_JOB_FAILED

    run(ctx, action)


async def _follow(client: Client, job: dict[str, Any], as_json: bool) -> dict[str, Any]:
    job_id = str(job["id"])
    if as_json or not output.err.is_terminal:
        seen: list[str] = []

        def plain(update: str) -> None:
            if not as_json and (not seen or seen[-1] != update):
                seen.append(update)
                output.note(f"job {job_id}: {update}")

        try:
            return await wait_for_job(client, job_id, plain)
        except BaseException:
            output.note(f"stopped waiting; job {job_id} carries on (conveyor get {job_id})")
            raise
    with output.err.status(f"job {job_id}: {job.get('status')}") as spinner:

        def update(text: str) -> None:
            spinner.update(f"job {job_id}: {text}")

        try:
            return await wait_for_job(client, job_id, update)
        except BaseException:
            spinner.stop()
            output.note(f"stopped waiting; job {job_id} carries on (conveyor get {job_id})")
            raise


def get(ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Show a job: status, attempts, result or error."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        output.print_job(await client.job(job_id), opts.json)

    run(ctx, action)


def list_jobs(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help=f"Only this status: {', '.join(STATUSES)}")
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Job type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Jobs per page")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
) -> None:
    """List jobs, newest first (pass the shown next cursor as --cursor for more)."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        page = await client.jobs(status=status, type=job_type, limit=limit, cursor=cursor)
        if opts.json:
            output.emit_json(page)
            return
        output.out.print(output.jobs_table(page.get("items", [])))
        if page.get("next_cursor"):
            output.out.print(f"next cursor: {page['next_cursor']}", markup=False)

    run(ctx, action)


def cancel(ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel a waiting job now, or ask the worker to stop a running one."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        status_code, job = await client.cancel(job_id)
        if status_code == 202 and not opts.json:
            output.note("running: the worker was told to stop it; it will end cancelled")
        output.print_job(job, opts.json)

    run(ctx, action)


def retry(ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Submit a new job cloned from a finished one."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        output.print_job(await client.retry(job_id), opts.json)

    run(ctx, action)


def delete(ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Delete a finished job (admin)."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        await client.delete(job_id)
        if opts.json:
            output.emit_json({"deleted": job_id})
        else:
            output.out.print(f"deleted job {job_id}", markup=False)

    run(ctx, action)


def stats(ctx: typer.Context) -> None:
    """Job counts by status and type, and the queues' depth."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        data = await client.stats()
        if opts.json:
            output.emit_json(data)
            return
        queues = Table(title="queues", header_style="bold", title_justify="left")
        for column in ("QUEUE", "NAME", "MESSAGES", "CONSUMERS"):
            queues.add_column(column)
        for key, queue in (data.get("queues") or {}).items():
            queues.add_row(key, queue["name"], str(queue["messages"]), str(queue["consumers"]))
        age = f"counted {output.local_time(data.get('counted_at'))}"
        if data.get("counts_stale"):
            age += f" (stale: {data.get('counts_error') or 'the store did not answer'})"
        parts: list[Any] = [
            Text(f"{data.get('total', 0)} jobs, {age}"),
            output.key_values("by status", data.get("by_status") or {}),
            output.key_values("by type", data.get("by_type") or {}),
        ]
        parts.append(queues if data.get("queues") else Text(f"queues: {data.get('broker_error')}"))
        output.out.print(Group(*parts))

    run(ctx, action)
