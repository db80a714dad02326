"""API settings (``CONVEYOR_API_*`` on top of the shared ones)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

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
    counts_fold_s: float = Field(
        default=5.0,
        gt=0,
        description="How often one API replica folds the job-count changes into one "
        "document (reads stay one small query)",
    )
    stats_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest /v1/stats waits for the job counts or the broker before "
        "answering with the last known figures (and their age)",
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="An admin API key that lives only here (bootstrap for compose, k8s, CI); "
        "at least 32 characters",
    )
    key_cache_s: float = Field(
        default=10.0,
        ge=0,
        description="How long a verified key is trusted without a store read (a key revoked "
        "on another replica works at most this long)",
    )
    rate_limit_per_s: float = Field(
        default=100.0, ge=0, description="Default requests/s per API key (0: unlimited)"
    )
    rate_limit_burst: int = Field(default=200, ge=1, description="Default burst per API key")
    public_metrics: bool = Field(
        default=False, description="Serve /metrics without a key (else: a jobs:read key)"
    )
    public_docs: bool = Field(
        default=True, description="Serve /docs, /redoc and /openapi.json (false: not at all)"
    )
    max_subscriptions: int = Field(
        default=100, ge=1, le=10_000, description="Webhook subscriptions at most (409 above)"
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (CORS); none: CORS off",
        examples=["https://ops.example.com,http://localhost:5173"],
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host headers the API answers (DNS-rebinding guard); default: localhost "
        "names when it binds a loopback address, else any",
        examples=["conveyor.example.com,localhost"],
    )
    stream_buffer: int = Field(
        default=2000,
        ge=0,
        le=1_000_000,
        description="Events each API process keeps for Last-Event-ID resumption",
    )
    stream_client_queue: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Events waiting for one stream client before it is dropped (too slow)",
    )
    stream_linger_s: float = Field(
        default=60.0,
        ge=0,
        description="How long the API keeps watching events after its last stream client "
        "left (a client reconnecting within it resumes without a resync)",
    )
    job_retention_s: float = Field(
        default=7 * 86400.0,
        ge=1,
        description="Completed and cancelled jobs (and their deliveries) are deleted this "
        "long after they finish (per job: retention_s)",
    )
    failed_job_retention_s: float = Field(
        default=30 * 86400.0,
        ge=1,
        description="Failed jobs are deleted this long after they fail, counted from the "
        "purge for dead letters (which are kept until redriven or purged)",
    )
    retention_sweep_s: float = Field(
        default=60.0,
        ge=0,
        description="How often the API deletes expired jobs (0: never; a MongoDB TTL index "
        "still removes them a day late, without their deliveries)",
    )
    retention_sweep_batch: int = Field(
        default=500, ge=1, le=10_000, description="Expired jobs deleted per sweep at most"
    )
    scheduler_interval_s: float = Field(
        default=1.0, ge=0, description="How often each API fires due schedules (0: never)"
    )
    max_schedules: int = Field(
        default=1000, ge=1, le=100_000, description="Cron schedules at most (409 above)"
    )
    readiness_timeout_s: float = Field(default=2.0, gt=0, description="Per-check /readyz budget")

    @field_validator("admin_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, key: object) -> object:
        return None if key == "" else key

    @field_validator("admin_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 32:
            raise ValueError(
                "an admin key needs at least 32 characters (e.g. openssl rand -hex 32)"
            )
        return key

    @property
    def trusted_hosts(self) -> list[str]:
        if self.allowed_hosts:
            return self.allowed_hosts
        loopback = self.api_host in ("127.0.0.1", "::1", "localhost")
        return ["localhost", "127.0.0.1", "::1", "[::1]"] if loopback else ["*"]
