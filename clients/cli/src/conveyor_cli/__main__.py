"""``python -m conveyor_cli``: the same as the ``conveyor`` script."""

from conveyor_cli.main import app

app(prog_name="conveyor")
