"""Running a command: build the client from the global options, map failures to exit codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import typer

from conveyor_cli import output
from conveyor_cli.client import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    BadInputError,
    Client,
    ConveyorError,
    Settings,
)

Action = Callable[[Client], Awaitable[int | None]]


def settings(ctx: typer.Context) -> Settings:
    found = ctx.find_object(Settings)
    if found is None:  # pragma: no cover - the callback always sets it
        raise RuntimeError("global options missing")
    return found


def run(ctx: typer.Context, action: Action) -> None:
    """Run ``action`` with a client; exit with its code or the code of its failure."""
    opts = settings(ctx)

    async def main() -> int | None:
        async with Client(opts) as client:
            return await action(client)

    try:
        code = asyncio.run(main())
    except ConveyorError as exc:
        output.print_error(exc, opts.json)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        output.note("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code or EXIT_OK)


def read_json_arg(value: str, what: str) -> Any:
    """``value`` as JSON, or the JSON in the file ``@path`` (``@-``: stdin)."""
    if value.startswith("@"):
        path = value[1:]
        try:
            text = typer.get_text_stream("stdin").read() if path == "-" else _read(path)
        except OSError as exc:
            raise BadInputError(f"cannot read {what} file {path!r}: {exc.strerror}") from exc
    else:
        text = value
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadInputError(f"{what} is not valid JSON: {exc}", code="invalid_json") from exc


def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def fail_usage(message: str, code: str = "bad_input") -> ConveyorError:
    return BadInputError(message, code=code)
