"""Base settings shared by every service (environment variables prefixed ``CONVEYOR_``).

A list setting takes a JSON list or comma-separated values
(``CONVEYOR_NOTIFY_ALLOWED_NETWORKS=127.0.0.0/8,10.0.0.0/8``). :func:`load_settings`
turns an invalid setting into one line naming the variable, the problem and an
example, and exit status 2, instead of a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import typing
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor_kernel.notify_spec import check_webhook_secret
from conveyor_kernel.sealing import check_fernet_key

ENV_PREFIX = "CONVEYOR_"
S = TypeVar("S", bound="ConveyorSettings")


def env_list(value: object) -> object:
    """A list setting's raw value: a JSON list, or comma-separated values."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not a valid JSON list ({exc})") from None
    return [part.strip() for part in text.split(",") if part.strip()]


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation))


class ConveyorSettings(BaseSettings):
    """Settings every Conveyor process reads. Services subclass this."""

    # enable_decoding=False: list values reach _lists_from_env as typed, not as JSON only.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", enable_decoding=False)

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
    counts_flush_s: float = Field(
        default=1.0,
        gt=0,
        description="How often a process writes its job-count changes (/v1/stats shows "
        "other processes' changes this much later)",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Bind address of /metrics, /healthz, /readyz (workers, notifiers)",
    )
    events_enabled: bool = Field(
        default=True,
        description="Publish job events for the notifier (off: no webhooks or emails at all)",
    )
    events_gate_refresh_s: float = Field(
        default=2.0,
        ge=0,
        description="Workers publish a job event only if something consumes it (the job's "
        "own notify, an enabled webhook subscription for its type, a stream client); they "
        "re-read which event types subscriptions want this often (and at once when the API "
        "announces a change). 0: publish every event",
    )
    public_url: str = Field(
        default="http://localhost:8000", description="Base URL of the API, for links in messages"
    )
    secrets_key: list[SecretStr] = Field(
        default_factory=list,
        description="Fernet key(s) sealing webhook secrets at rest; the first seals, all open",
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

    @field_validator("*", mode="before")
    @classmethod
    def _lists_from_env(cls, value: object, info: ValidationInfo) -> object:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _is_list(field.annotation):
            return env_list(value)
        return value

    @field_validator("secrets_key")
    @classmethod
    def _fernet_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            check_fernet_key(key.get_secret_value())
        return keys

    @field_validator("webhook_secret")
    @classmethod
    def _valid_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None:
            check_webhook_secret(secret.get_secret_value())
        return secret


def _example(cls: type[ConveyorSettings], name: str) -> str:
    field = cls.model_fields[name]
    examples = field.examples or []
    if examples:
        return str(examples[0])
    default = field.get_default(call_default_factory=True)
    if isinstance(default, list):
        return ",".join(str(v) for v in default) or "a,b"
    if default is None or isinstance(default, SecretStr):
        return "..."
    return str(default).lower() if isinstance(default, bool) else str(default)


def settings_errors(cls: type[ConveyorSettings], exc: ValidationError) -> list[str]:
    """One line per invalid variable: name, value (secrets masked), problem, example."""
    lines: list[str] = []
    seen: set[str] = set()
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        if name in seen:
            continue
        seen.add(name)
        if name not in cls.model_fields:
            lines.append(f"invalid settings: {error['msg']}")
            continue
        var = ENV_PREFIX + name.upper()
        raw = os.environ.get(var)
        secret = "secret" in name or "password" in name or "token" in name
        shown = "(hidden)" if secret and raw is not None else repr(raw)
        item = error["loc"][1] if len(error["loc"]) > 1 else None
        where = f" (item {item + 1})" if isinstance(item, int) else ""
        problem = str(error["msg"]).removeprefix("Value error, ")
        example = f"{var}={_example(cls, name)}"
        lines.append(f"invalid setting {var}={shown}: {problem}{where}; e.g. {example}")
    return lines


def load_settings(cls: type[S], program: str) -> S:
    """``cls()`` from the environment; on an invalid value, print one line per
    problem to stderr and exit with status 2 (no traceback)."""
    try:
        return cls()
    except ValidationError as exc:
        for line in settings_errors(cls, exc):
            print(f"{program}: {line}", file=sys.stderr)
        raise SystemExit(2) from None
