"""``conveyor watch``: job events as they happen (a live table, plain lines or JSON lines)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from conveyor_cli import output
from conveyor_cli.client import Client
from conveyor_cli.runtime import run, settings
from conveyor_cli.stream import CONTROL_KINDS, OPEN, Event, describe, events

MAX_ROWS = 40


class Board:
    """The live table: one row per job, the most recently changed first."""

    def __init__(self) -> None:
        self.rows: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.count = 0
        self.notice = ""

    def add(self, event: Event) -> None:
        job_id = str(event.data.get("job_id", "?"))
        self.count += 1
        known = self.rows.get(job_id)
        if known is not None and str(known.get("at", "")) > str(event.data.get("at", "")):
            return  # events of different publishers can arrive out of order: keep the newest
        self.rows.pop(job_id, None)
        self.rows[job_id] = {"kind": event.kind, **event.data}
        while len(self.rows) > MAX_ROWS:
            self.rows.popitem(last=False)

    def render(self) -> Table:
        caption = f"{self.count} events; Ctrl-C to stop" + (
            f"; {self.notice}" if self.notice else ""
        )
        table = Table(header_style="bold", caption=caption, caption_justify="left")
        for column in ("JOB", "TYPE", "STATUS", "ATTEMPT", "PROGRESS", "EVENT", "AT", "ERROR"):
            table.add_column(column, no_wrap=column != "ERROR")
        for job_id, row in reversed(self.rows.items()):
            progress = row.get("progress") or {}
            fraction = progress.get("fraction") if isinstance(progress, dict) else None
            table.add_row(
                job_id,
                str(row.get("job_type", "")),
                output.status_text(row.get("status", "")),
                str(row.get("attempt") or ""),
                f"{float(fraction):.0%}" if fraction is not None else "",
                str(row.get("kind", "")),
                output.local_time(row.get("at")),
                str(row.get("error") or ""),
            )
        return table


def _plain(event: Event) -> str:
    data = event.data
    line = (
        f"{output.local_time(data.get('at'))}  {event.kind:<14} {data.get('job_id', '')}"
        f"  {data.get('job_type', '')}  {describe(data)}"
    )
    return line + (f"  error: {data['error']}" if data.get("error") else "")


def _control_note(event: Event, first: bool) -> str:
    if event.kind == OPEN:
        return "watching job events (Ctrl-C to stop)" if first else "reconnected"
    if event.kind == "resync":
        reason = event.data.get("reason", "")
        return f"some events were missed ({reason}); carrying on from now"
    return "the server dropped this client (too slow); reconnecting"


def watch(
    ctx: typer.Context,
    *,
    job_type: Annotated[str | None, typer.Option("--type", help="Only this job type")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="Only these statuses (repeat it or comma-separate)"),
    ] = None,
    job_id: Annotated[str | None, typer.Option(help="Only this job")] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after N job events")] = None,
    for_s: Annotated[float | None, typer.Option("--for", min=0, help="Stop after SECONDS")] = None,
) -> None:
    """Follow job events live until Ctrl-C, --count N events or --for SECONDS."""
    opts = settings(ctx)
    statuses = [s.strip() for item in status or [] for s in item.split(",") if s.strip()]

    async def action(client: Client) -> None:
        board = Board()
        live: Live | None = None
        if not opts.json and output.out.is_terminal:
            live = Live(board.render(), console=output.out, auto_refresh=False)
        state = {"seen": 0, "opened": 0}

        def handle(event: Event) -> bool:
            """Show one event; True once --count job events were shown."""
            if event.kind in CONTROL_KINDS:
                text = _control_note(event, state["opened"] == 0)
                state["opened"] += event.kind == OPEN
                if opts.json and event.kind != OPEN:
                    output.emit_json(event.as_json())
                if live is not None:
                    board.notice = "" if text.startswith("watching") else text
                    live.update(board.render(), refresh=True)
                else:
                    output.note(text)
                return False
            state["seen"] += 1
            if opts.json:
                output.emit_json(event.as_json())
            elif live is not None:
                board.add(event)
                live.update(board.render(), refresh=True)
            else:
                output.out.print(_plain(event), markup=False)
            return count is not None and state["seen"] >= count

        with live if live is not None else contextlib.nullcontext():
            await _consume(
                client,
                job_id=job_id,
                job_type=job_type,
                statuses=statuses,
                for_s=for_s,
                handle=handle,
            )

    run(ctx, action)


async def _consume(
    client: Client,
    *,
    job_id: str | None,
    job_type: str | None,
    statuses: list[str],
    for_s: float | None,
    handle: Callable[[Event], bool],
) -> None:
    async def loop() -> None:
        stream = events(client, job_id=job_id, job_type=job_type, statuses=statuses or None)
        async with contextlib.aclosing(stream) as source:
            async for event in source:
                if handle(event):
                    return

    if for_s is None:
        await loop()
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(for_s):
            await loop()
