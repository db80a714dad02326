"""What a job asks to be told about: event types and notification targets.

Kept apart from :mod:`conveyor_kernel.model` so the job model, the event
envelope and the notifier can all import it without cycles.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_serializer,
    field_validator,
)


class EventType(StrEnum):
    """Job lifecycle events (routing keys on the events exchange)."""

    COMPLETED = "job.completed"
    FAILED = "job.failed"
    RETRYING = "job.retrying"
    CANCELLED = "job.cancelled"


ALL_EVENTS: tuple[EventType, ...] = tuple(EventType)
FINAL_EVENTS: tuple[EventType, ...] = (EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED)
MAX_URL_LENGTH = 2048


def check_webhook_secret(secret: str) -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24-64 random bytes."""
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a webhook secret must decode to 24-64 bytes, not {len(key)}")
    return secret


def check_http_url(url: AnyHttpUrl) -> AnyHttpUrl:
    if len(str(url)) > MAX_URL_LENGTH:
        raise ValueError(f"URL longer than {MAX_URL_LENGTH} characters")
    if url.username or url.password:
        raise ValueError("URL must not carry credentials")
    return url


class WebhookTarget(BaseModel):
    """POST a signed event to ``url`` (Standard Webhooks) for each of ``events``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: AnyHttpUrl
    events: list[EventType] = Field(default_factory=lambda: list(FINAL_EVENTS), min_length=1)

    _check_url = field_validator("url")(check_http_url)

    @field_serializer("url")
    def _url_as_str(self, url: AnyHttpUrl) -> str:
        return str(url)  # stored in MongoDB as a plain string


class EmailTarget(BaseModel):
    """Email ``to`` for each of ``events``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: list[EmailStr] = Field(min_length=1, max_length=50)
    events: list[EventType] = Field(default_factory=lambda: list(FINAL_EVENTS), min_length=1)


class NotifySpec(BaseModel):
    """``notify`` on a job submission (default events: completed, failed, cancelled)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: WebhookTarget | None = None
    email: EmailTarget | None = None

    def wants(self, kind: EventType) -> bool:
        """Whether any of the job's own targets is sent events of ``kind``."""
        return any(t is not None and kind in t.events for t in (self.webhook, self.email))
