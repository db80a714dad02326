"""``conveyor dead-letters``: parked jobs (admin): list, redrive, purge."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from conveyor_cli import output
from conveyor_cli.client import Client
from conveyor_cli.runtime import fail_usage, run, settings

app = typer.Typer(help="Jobs parked after their final failure (admin key).", no_args_is_help=True)


@app.command("list")
def list_dead_letters(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Entries per page")] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
) -> None:
    """List dead letters, newest first."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        page = await client.dead_letters(limit, cursor)
        if opts.json:
            output.emit_json(page)
            return
        table = Table(header_style="bold")
        for column in ("JOB", "TYPE", "REASON", "ATTEMPTS", "PARKED", "ERROR"):
            table.add_column(column, no_wrap=column != "ERROR")
        for item in page.get("items", []):
            table.add_row(
                str(item.get("job_id")),
                str(item.get("type")),
                str(item.get("reason")),
                str(item.get("attempts")),
                output.local_time(item.get("dead_lettered_at")),
                str(item.get("error") or ""),
            )
        output.out.print(table)
        if page.get("next_cursor"):
            output.out.print(f"next cursor: {page['next_cursor']}", markup=False)

    run(ctx, action)


@app.command()
def redrive(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Argument(metavar="IDS", help="Job ids")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter")] = False,
) -> None:
    """Send parked jobs back to the queue with a fresh retry budget."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        if bool(ids) == all_:
            raise fail_usage("give job IDS or --all (not both)")
        result = await client.redrive(None if all_ else list(ids or []))
        if opts.json:
            output.emit_json(result)
            return
        redriven = result.get("redriven", [])
        output.out.print(f"redriven {len(redriven)} jobs", markup=False)
        for job_id in redriven:
            output.out.print(f"  {job_id}", markup=False)
        for skipped in result.get("skipped", []):
            output.err.print(
                f"skipped {skipped.get('job_id')}: {skipped.get('reason')}", markup=False
            )

    run(ctx, action)


@app.command()
def purge(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Really forget them all")] = False,
) -> None:
    """Forget every dead letter (the jobs stay failed) and empty the parking lot."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        if not yes:
            raise fail_usage("purge forgets every dead letter; confirm with --yes")
        result = await client.purge_dead_letters()
        if opts.json:
            output.emit_json(result)
        else:
            output.out.print(
                f"purged {result.get('purged_jobs')} dead letters and "
                f"{result.get('purged_messages')} parked messages",
                markup=False,
            )

    run(ctx, action)
