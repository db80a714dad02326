"""Worker settings (``CONVEYOR_WORKER_*`` on top of the shared ones)."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from conveyor_kernel.settings import ConveyorSettings


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(ConveyorSettings):
    worker_concurrency: int = Field(
        default=4, ge=1, le=1000, description="Jobs one worker process runs at once"
    )
    worker_prefetch: int | None = Field(
        default=None,
        ge=1,
        description="Unacked messages per worker (default: = concurrency; keep low for priorities)",
    )
    worker_shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long in-flight jobs may finish"
    )
    worker_record_running_after_s: float = Field(
        default=0.25,
        ge=0,
        description="An attempt still running after this long is written as running (so a "
        "lost worker shows); faster ones cost a single write, at the end",
    )
    worker_recheck_s: float = Field(
        default=30.0,
        ge=0.1,
        le=3600,
        description="A message that comes back while its attempt still runs in a live "
        "worker (a channel closed under it) is checked again this often, never run twice",
    )
    metrics_port: int = Field(
        default=9101, ge=0, le=65535, description="/metrics, /healthz, /readyz port (0: off)"
    )
    worker_id: str = Field(default_factory=_default_worker_id, description="Name in attempts")

    @property
    def prefetch(self) -> int:
        return self.worker_prefetch or self.worker_concurrency
