"""Entry point; the commands are being built (issue 12)."""

from __future__ import annotations

import typer

app = typer.Typer(name="conveyor", help="Conveyor's command-line client.", no_args_is_help=True)
