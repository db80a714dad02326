"""``conveyor``: the command-line client of Conveyor's REST API."""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor_cli import batch, dead_letters, jobs, watch, webhooks
from conveyor_cli.client import Settings

DEFAULT_URL = "http://127.0.0.1:8000"
EPILOG = (
    "Exit codes: 0 ok; 1 the job failed or was cancelled (submit --wait); "
    "2 usage or bad input (incl. the API's 4xx validation errors); "
    "3 authentication or permission (401/403); 4 not found; "
    "5 API unavailable (connection error, timeout, 5xx, 429); 130 interrupted (Ctrl-C)."
)

app = typer.Typer(
    name="conveyor",
    help="Conveyor's command-line client: submit, follow and manage background jobs.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold the API key
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="CONVEYOR_URL", help="Base URL of the Conveyor API")
    ] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="CONVEYOR_API_KEY",
            help="API key, sent as 'Authorization: Bearer <key>' (never printed)",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Machine output: JSON on stdout (errors on stderr)")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="HTTP timeout in seconds", envvar="CONVEYOR_TIMEOUT")
    ] = 30.0,
) -> None:
    ctx.obj = Settings(url=url, api_key=api_key or None, timeout=timeout, json=json_output)


app.command(epilog=EPILOG)(jobs.submit)
app.command(epilog=EPILOG)(jobs.get)
app.command("list", epilog=EPILOG)(jobs.list_jobs)
app.command(epilog=EPILOG)(watch.watch)
app.command(epilog=EPILOG)(jobs.cancel)
app.command(epilog=EPILOG)(jobs.retry)
app.command(epilog=EPILOG)(jobs.delete)
app.command(epilog=EPILOG)(jobs.stats)
app.command("submit-file", epilog=EPILOG)(batch.submit_file)
app.add_typer(dead_letters.app, name="dead-letters", epilog=EPILOG)
app.add_typer(webhooks.app, name="webhooks", epilog=EPILOG)
