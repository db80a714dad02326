"""API settings (``CONVEYOR_API_*`` on top of the shared ones)."""

from __future__ import annotations

from pydantic import Field

from conveyor_kernel.settings import ConveyorSettings


class ApiSettings(ConveyorSettings):
    api_host: str = Field(default="127.0.0.1", description="Address the API binds")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port the API binds")
    max_request_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest accepted request body (413 above)"
    )
    max_batch_request_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest body of POST /v1/jobs/batch"
    )
    queue_metrics_interval_s: float = Field(
        default=5.0, ge=0, description="How often /metrics' queue gauges are read (0: never)"
    )
    stats_max_age_s: float = Field(
        default=5.0,
        ge=0,
        description="/v1/stats serves job counts up to this old without recounting",
    )
    stats_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest /v1/stats waits for a recount or the broker before answering "
        "with the last known figures (and their age)",
    )
    readiness_timeout_s: float = Field(default=2.0, gt=0, description="Per-check /readyz budget")
