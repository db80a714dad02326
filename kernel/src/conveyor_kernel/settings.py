"""Base settings shared by every service (environment variables prefixed ``CONVEYOR_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor_kernel.notify_spec import check_webhook_secret


class ConveyorSettings(BaseSettings):
    """Settings every Conveyor process reads. Services subclass this."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", description="RabbitMQ URL")
    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27017/", description="MongoDB connection string"
    )
    mongodb_db: str = Field(default="conveyor", description="MongoDB database name")
    mongodb_timeout_ms: int = Field(
        default=5000, ge=100, description="Server selection / socket timeout for MongoDB"
    )
    mongodb_max_pool: int = Field(
        default=16,
        ge=1,
        le=500,
        description="MongoDB connections (operations in flight) per process; keep the sum "
        "over all processes well under the server's limit (FerretDB: its PostgreSQL pool / 2)",
    )
    namespace: str = Field(
        default="conveyor",
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
        description="Prefix of every exchange and queue name (isolates stacks on one broker)",
    )
    handler_modules: list[str] = Field(
        default_factory=list,
        description="Extra 'module:function' registrars of job handlers (JSON list or comma list)",
    )
    log_level: str = Field(default="INFO", description="Log level")
    log_json: bool | None = Field(
        default=None, description="JSON logs (default: JSON unless stderr is a terminal)"
    )
    default_job_timeout_s: float = Field(
        default=300.0, gt=0, description="timeout_s of a job that does not set one"
    )
    outbox_grace_s: float = Field(
        default=15.0,
        gt=0,
        description="Wait, past the publish timeout, before the relay re-sends a message",
    )
    idempotency_ttl_s: float = Field(
        default=86400.0, gt=0, description="How long an Idempotency-Key is remembered"
    )
    publish_timeout_s: float = Field(
        default=5.0, gt=0, description="How long to wait for a publisher confirm"
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Bind address of /metrics, /healthz, /readyz (workers, notifiers)",
    )
    events_enabled: bool = Field(
        default=True,
        description="Publish job events for the notifier (off: no webhooks or emails at all)",
    )
    public_url: str = Field(
        default="http://localhost:8000", description="Base URL of the API, for links in messages"
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="whsec_... secret that signs per-job webhooks (subscriptions have their own)",
    )

    @property
    def relay_after_s(self) -> float:
        """Age at which the relays treat an outbox entry as stranded: the grace period
        after the longest its writer can still be waiting for the broker's confirms
        (so a slow but live write, e.g. a 1,000-job batch under load, is not sent twice)."""
        return self.outbox_grace_s + self.publish_timeout_s

    @field_validator("webhook_secret")
    @classmethod
    def _valid_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None:
            check_webhook_secret(secret.get_secret_value())
        return secret
