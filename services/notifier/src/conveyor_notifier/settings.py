"""Notifier settings (``CONVEYOR_NOTIFY_*``, ``CONVEYOR_SMTP_*``, ``CONVEYOR_MAILTRAP_*``)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from conveyor_kernel.notify_spec import check_webhook_secret
from conveyor_kernel.settings import ConveyorSettings

# Roughly x4 each step, ~25.7 h in all: 11 attempts (the first immediately).
DEFAULT_SCHEDULE_S: list[float] = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 36000]


class NotifierSettings(ConveyorSettings):
    notify_subscription_cache_s: float = Field(
        default=30.0,
        ge=0,
        description="Longest time a subscription change can go unseen if its change signal "
        "is lost (changes are normally seen at once)",
    )
    notify_concurrency: int = Field(
        default=32, ge=1, le=1000, description="Deliveries one notifier process makes at once"
    )
    notify_retry_schedule_s: list[float] = Field(
        default_factory=lambda: list(DEFAULT_SCHEDULE_S),
        min_length=0,
        max_length=50,
        description="Delay before each retry, in seconds; its length is the retries",
    )
    notify_disable_after_failed_deliveries: int = Field(
        default=50,
        ge=0,
        description="Disable a subscription after this many deliveries in a row failed "
        "every retry (0: never)",
    )
    notify_disable_after_failing_s: float = Field(
        default=5 * 86400.0,
        ge=0,
        description="Disable a subscription whose every attempt has failed for this long "
        "(0: never)",
    )
    notify_retry_jitter: float = Field(
        default=0.2, ge=0, le=1, description="Each delay is stretched by up to this fraction"
    )
    notify_retry_after_max_s: float = Field(
        default=86400.0, ge=0, description="Cap on a receiver's Retry-After"
    )
    notify_shutdown_grace_s: float = Field(
        default=20.0, ge=0, description="On SIGTERM, how long in-flight deliveries may finish"
    )
    metrics_port: int = Field(
        default=9102, ge=0, le=65535, description="/metrics, /healthz, /readyz port (0: off)"
    )
    webhook_timeout_s: float = Field(default=15.0, gt=0, description="Per webhook request")
    webhook_max_redirects: int = Field(
        default=3, ge=0, le=10, description="307/308 redirects followed (each hop re-checked)"
    )
    webhook_previous_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Old CONVEYOR_WEBHOOK_SECRET values still signing per-job webhooks (rotation)",
    )
    notify_allowed_networks: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description="CIDRs admitted although private/loopback/link-local (SSRF guard allowlist)",
        examples=["127.0.0.0/8,10.0.0.0/8"],
    )
    email_transport: Literal["smtp", "mailtrap-api", "none"] = Field(
        default="smtp", description="How emails leave: SMTP, Mailtrap's Send API, or not at all"
    )
    email_from: str = Field(default="Conveyor <conveyor@localhost>", description="From header")
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server (Mailtrap: see README)")
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        default="none", description="none, STARTTLS upgrade, or implicit TLS (port 465)"
    )
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_ca_file: str | None = Field(
        default=None, description="Extra CA bundle to trust for the SMTP server's certificate"
    )
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    mailtrap_api_url: str = Field(
        default="https://send.api.mailtrap.io/api/send",
        description="Send API endpoint (sandbox: https://sandbox.api.mailtrap.io/api/send/<inbox>)",
    )
    mailtrap_api_token: SecretStr | None = None
    mailtrap_category: str = Field(default="conveyor", max_length=255)

    @field_validator("webhook_previous_secrets")
    @classmethod
    def _valid_secrets(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        for secret in secrets:
            check_webhook_secret(secret.get_secret_value())
        return secrets

    @field_validator("notify_retry_schedule_s")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError("retry delays must be >= 0")
        return value

    @property
    def max_attempts(self) -> int:
        return len(self.notify_retry_schedule_s) + 1
