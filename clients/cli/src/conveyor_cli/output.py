"""Rendering: Rich tables and panels for people, one JSON document for programs.

Data goes to stdout, everything else (errors, progress, spinners, notes) to
stderr, so ``conveyor --json ... | jq`` sees only JSON. Times are shown in the
local time zone.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.json import JSON
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from conveyor_cli.client import ConveyorError

STATUS_STYLES = {
    "scheduled": "cyan",
    "queued": "blue",
    "running": "yellow",
    "retrying": "magenta",
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
}
TERMINAL = frozenset({"completed", "failed", "cancelled"})
PIPE_WIDTH = 200  # no terminal: do not wrap ids and times at 80 columns


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", PIPE_WIDTH))
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


out = _console(stderr=False)
err = _console(stderr=True)


def emit_json(value: Any) -> None:
    """One JSON document (or JSON line) on stdout, flushed at once."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def local_time(value: Any) -> str:
    """An ISO timestamp from the API in the local zone; ``-`` for none."""
    if not value:
        return "-"
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if parsed.tzinfo is None:
        return str(value)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def status_text(status: Any) -> Text:
    name = str(status)
    return Text(name, style=STATUS_STYLES.get(name, ""))


def note(message: str) -> None:
    err.print(message, markup=False)


def print_error(error: ConveyorError, as_json: bool) -> None:
    """An error on stderr: the API's body readably, or as JSON with ``--json``."""
    if as_json:
        sys.stderr.write(json.dumps(error.as_json(), ensure_ascii=False) + "\n")
        return
    where = f" (HTTP {error.status} {error.code})" if error.status else ""
    err.print(Text("error: ", style="bold red") + Text(f"{error.message}{where}"))
    for key, value in error.body.items():
        if key in {"code", "message"}:
            continue
        if key == "details" and isinstance(value, list):
            for detail in value:
                if isinstance(detail, dict):
                    loc = ".".join(str(p) for p in detail.get("loc", []) if p != "body")
                    err.print(f"  - {loc or '(body)'}: {detail.get('msg')}", markup=False)
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        err.print(f"  {key}: {shown}", markup=False)


def job_panel(job: dict[str, Any]) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("id", job.get("id", "-"))
    grid.add_row("type", str(job.get("type", "-")))
    grid.add_row("status", status_text(job.get("status")))
    grid.add_row("priority", str(job.get("priority", "-")))
    attempts = job.get("attempts") or []
    grid.add_row("attempts", f"{len(attempts)} (max retries {job.get('max_retries', '-')})")
    for label in ("created_at", "started_at", "finished_at", "next_attempt_at"):
        if job.get(label):
            grid.add_row(label.removesuffix("_at"), local_time(job[label]))
    if job.get("retry_of"):
        grid.add_row("retry of", str(job["retry_of"]))
    if job.get("error"):
        grid.add_row("error", Text(str(job["error"]), style="red"))
    if job.get("payload"):
        grid.add_row("payload", JSON.from_data(job["payload"]))
    if job.get("result") is not None:
        grid.add_row("result", JSON.from_data(job["result"]))
    style = STATUS_STYLES.get(str(job.get("status")), "")
    return Panel(grid, title=f"job {job.get('id', '')}", border_style=style, expand=False)


def print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(job)
    else:
        out.print(job_panel(job))


def jobs_table(items: list[dict[str, Any]]) -> Table:
    table = Table(title=None, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=32)
    table.add_column("TYPE", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("PRI", justify="right")
    table.add_column("ATT", justify="right")
    table.add_column("CREATED", no_wrap=True)
    table.add_column("FINISHED", no_wrap=True)
    table.add_column("ERROR", overflow="ellipsis", max_width=40)
    for job in items:
        table.add_row(
            str(job.get("id")),
            str(job.get("type")),
            status_text(job.get("status")),
            str(job.get("priority", "")),
            str(len(job.get("attempts") or [])),
            local_time(job.get("created_at")),
            local_time(job.get("finished_at")),
            str(job.get("error") or ""),
        )
    return table


def key_values(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    table.add_column("NAME")
    table.add_column("COUNT", justify="right")
    for name, value in rows.items():
        table.add_row(status_text(name) if name in STATUS_STYLES else Text(name), str(value))
    return table
