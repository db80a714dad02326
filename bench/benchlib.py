"""Helpers the benchmark scripts share (imported as ``benchlib``: run scripts as
``uv run python bench/<script>.py``, which puts this directory on ``sys.path``)."""

from __future__ import annotations

import argparse
import os
import socket

from conveyor_kernel.events import JobEvent, job_event
from conveyor_kernel.model import Job, JobStatus, JobSubmission, utcnow


def add_server_args(ap: argparse.ArgumentParser) -> None:
    """``--amqp-url`` and ``--mongodb-url`` (defaults: the environment, then local)."""
    ap.add_argument(
        "--amqp-url",
        default=os.environ.get("CONVEYOR_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    ap.add_argument(
        "--mongodb-url",
        default=os.environ.get("CONVEYOR_MONGODB_URL", "mongodb://127.0.0.1:27017/"),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def service_env(amqp_url: str, mongodb_url: str, namespace: str, **extra: str) -> dict[str, str]:
    """The environment of a Conveyor process for this run (no inherited CONVEYOR_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return env | {
        "CONVEYOR_AMQP_URL": amqp_url,
        "CONVEYOR_MONGODB_URL": mongodb_url,
        "CONVEYOR_MONGODB_DB": f"conveyor_{namespace}",
        "CONVEYOR_NAMESPACE": namespace,
        "CONVEYOR_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "CONVEYOR_LOG_JSON": "true",
        **extra,
    }


def completed_event(webhook_url: str, payload: dict[str, object] | None = None) -> JobEvent:
    """The ``job.completed`` event of a fresh echo job that asks for a webhook."""
    sub = JobSubmission(
        type="echo", payload=payload or {}, notify={"webhook": {"url": webhook_url}}
    )
    now = utcnow()
    job = Job.from_submission(sub, default_timeout_s=5).model_copy(
        update={"status": JobStatus.COMPLETED, "finished_at": now, "updated_at": now}
    )
    event = job_event(job, "http://localhost:8000")
    assert event is not None
    return event
