"""The Celery side of ``bench/compare.py``: the app, its no-op task, and a
pymongo command counter for the worker processes.

The worker runs it as ``celery -A celery_peer worker ...`` with the run's
settings in the environment (``CELERY_PEER_*``, see ``app_from_env``); the
benchmark builds its own client app with ``make_app``.

Store round trips: every prefork child registers a ``pymongo.monitoring``
``CommandListener`` globally when it starts (``worker_process_init``), before
the MongoDB result backend creates its client there, so every command the
backend sends is counted by name. Each child writes its counts to
``$CELERY_PEER_COUNT_DIR/<pid>.json`` at most once a second and when it exits
(``worker_process_shutdown``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery, signals
from pymongo import monitoring

TASK_NAME = "celery_peer.noop"


def make_app(
    broker: str,
    backend: str,
    queue: str,
    *,
    confirm_publish: bool = True,
    pool_limit: int = 10,
) -> Celery:
    """A Celery 5 app on ``broker`` storing results in MongoDB (``backend`` is a
    ``mongodb://host/db`` URL), routing everything through ``queue``."""
    app = Celery("celery_peer", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        mongodb_backend_settings={"taskmeta_collection": "celery_taskmeta"},
        result_expires=None,  # no periodic cleanup task
        broker_pool_limit=pool_limit,
        # Like Conveyor's 202, a returned apply_async then means the broker has the message.
        broker_transport_options={"confirm_publish": confirm_publish},
        broker_connection_retry_on_startup=True,
        # No pidbox/event exchanges: nothing outside the run's own queue is declared.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )

    @app.task(name=TASK_NAME)
    def noop(i: int) -> dict[str, Any]:
        return {"ok": True, "i": i}

    return app


def app_from_env() -> Celery:
    return make_app(
        os.environ.get("CELERY_PEER_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
        os.environ.get("CELERY_PEER_BACKEND", "mongodb://127.0.0.1:27017/celery_peer"),
        os.environ.get("CELERY_PEER_QUEUE", "celery_peer"),
        confirm_publish=os.environ.get("CELERY_PEER_CONFIRM_PUBLISH", "1") == "1",
    )


class CommandCounter(monitoring.CommandListener):
    """Counts commands started by name (one per round trip) and failures."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commands: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self._lock = threading.Lock()
        self._flushed = 0.0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.commands[event.command_name] = self.commands.get(event.command_name, 0) + 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if time.monotonic() - self._flushed > 1.0:
            self.flush()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self._lock:
            self.failures[event.command_name] = self.failures.get(event.command_name, 0) + 1

    def flush(self) -> None:
        with self._lock:
            self._flushed = time.monotonic()
            body = json.dumps({"commands": self.commands, "failures": self.failures})
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(body)
        tmp.replace(self.path)


_counter: CommandCounter | None = None


@signals.worker_process_init.connect
def _count_store_commands(**_: Any) -> None:
    global _counter  # noqa: PLW0603 - one counter per pool process
    out_dir = os.environ.get("CELERY_PEER_COUNT_DIR")
    if out_dir:
        _counter = CommandCounter(Path(out_dir) / f"{os.getpid()}.json")
        monitoring.register(_counter)


@signals.worker_process_shutdown.connect
def _write_store_commands(**_: Any) -> None:
    if _counter is not None:
        _counter.flush()


def read_counts(out_dir: Path) -> tuple[dict[str, float], dict[str, float], int]:
    """Commands and failures by name summed over the files of ``out_dir``, and
    how many processes wrote one."""
    commands: dict[str, float] = {}
    failures: dict[str, float] = {}
    files = sorted(out_dir.glob("*.json"))
    for path in files:
        body = json.loads(path.read_text())
        for total, part in ((commands, body["commands"]), (failures, body["failures"])):
            for k, v in part.items():
                total[k] = total.get(k, 0) + v
    return commands, failures, len(files)


app = app_from_env()
