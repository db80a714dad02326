"""``conveyor webhooks``: standing subscriptions to job events (admin)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor_cli import output
from conveyor_cli.client import Client
from conveyor_cli.runtime import run, settings

EVENTS = ("job.completed", "job.failed", "job.retrying", "job.cancelled")
app = typer.Typer(help="Webhook subscriptions (admin key).", no_args_is_help=True)


def _secret_notice(secret: str) -> None:
    output.out.print(f"secret: {secret}", markup=False)
    output.err.print("store this signing secret now: it is not shown again", markup=False)


@app.command("list")
def list_webhooks(ctx: typer.Context) -> None:
    """List subscriptions (never their secrets)."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        hooks: list[dict[str, Any]] = await client.webhooks()
        if opts.json:
            output.emit_json(hooks)
            return
        table = Table(header_style="bold")
        for column in ("ID", "URL", "EVENTS", "ENABLED", "FAILED", "CREATED", "DESCRIPTION"):
            table.add_column(column, no_wrap=column not in {"EVENTS", "DESCRIPTION"})
        for hook in hooks:
            enabled = "yes" if hook.get("enabled") else f"no ({hook.get('disabled_reason')})"
            table.add_row(
                str(hook.get("id")),
                str(hook.get("url")),
                ", ".join(hook.get("events", [])),
                enabled,
                str(hook.get("failed_deliveries", 0)),
                output.local_time(hook.get("created_at")),
                str(hook.get("description") or ""),
            )
        output.out.print(table)

    run(ctx, action)


@app.command()
def create(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(metavar="URL", help="Receiver (a public address)")],
    events: Annotated[
        list[str] | None,
        typer.Option("--events", "--event", help=f"Repeat or comma-separate: {', '.join(EVENTS)}"),
    ] = None,
    description: Annotated[str | None, typer.Option(help="Free text")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it switched off")] = False,
) -> None:
    """Subscribe URL to job events; prints the signing secret once."""
    opts = settings(ctx)
    chosen = [e.strip() for item in events or [] for e in item.split(",") if e.strip()]

    async def action(client: Client) -> None:
        body: dict[str, Any] = {"url": url, "enabled": not disabled}
        if chosen:
            body["events"] = chosen
        if description is not None:
            body["description"] = description
        hook = await client.create_webhook(body)
        if opts.json:
            output.emit_json(hook)
            return
        output.out.print(
            f"created webhook {hook['id']} -> {hook['url']} ({', '.join(hook['events'])})",
            markup=False,
        )
        _secret_notice(str(hook["secret"]))

    run(ctx, action)


@app.command()
def delete(ctx: typer.Context, sub_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Delete a subscription."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        await client.delete_webhook(sub_id)
        if opts.json:
            output.emit_json({"deleted": sub_id})
        else:
            output.out.print(f"deleted webhook {sub_id}", markup=False)

    run(ctx, action)


@app.command()
def rotate(
    ctx: typer.Context,
    sub_id: Annotated[str, typer.Argument(metavar="ID")],
    previous_valid_s: Annotated[
        int, typer.Option(min=0, max=7 * 86400, help="How long the old secret keeps signing")
    ] = 86400,
) -> None:
    """Give a subscription a new signing secret; prints it once."""
    opts = settings(ctx)

    async def action(client: Client) -> None:
        rotated = await client.rotate_webhook(sub_id, previous_valid_s)
        if opts.json:
            output.emit_json(rotated)
            return
        until = output.local_time(rotated.get("previous_valid_until"))
        output.out.print(f"rotated webhook {sub_id}; the old secret signs too until {until}")
        _secret_notice(str(rotated["secret"]))

    run(ctx, action)
