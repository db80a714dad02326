"""``/v1/webhooks``: standing subscriptions to job events, and each job's delivery log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from conveyor_api.auth import Admin, Read
from conveyor_api.problems import ApiError
from conveyor_api.state import AppState, State
from conveyor_kernel.errors import BrokerUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import utcnow
from conveyor_kernel.notifications import (
    SUBSCRIPTIONS_CHANGED,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    PreviousSecret,
    Subscription,
    new_secret,
    new_subscription_id,
)
from conveyor_kernel.notify_spec import ALL_EVENTS, EventType, check_http_url

log = get_logger(__name__)
router = APIRouter(prefix="/v1", tags=["webhooks"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such subscription"}}


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(description="Receiver; must resolve to a public address")
    events: list[EventType] = Field(default_factory=lambda: list(ALL_EVENTS), min_length=1)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool = True

    _check_url = field_validator("url")(check_http_url)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl | None = None
    events: list[EventType] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(default=None, description="true re-enables one a 410 disabled")

    @field_validator("url")
    @classmethod
    def _url(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if url is None:
            raise ValueError("url cannot be null; leave it out to keep the current one")
        return check_http_url(url)

    @field_validator("events", "enabled")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null; leave it out to keep the current value")
        return value


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[EventType]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    failed_deliveries: int = Field(
        description="Deliveries in a row that failed after every retry (reset by a success)"
    )
    failing_since: datetime | None = Field(
        description="Since when every attempt failed (null: the last attempt succeeded)"
    )
    previous_secrets_valid_until: list[datetime]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, sub: Subscription) -> WebhookOut:
        now = utcnow()
        return cls(
            **sub.model_dump(include=set(cls.model_fields) - {"previous_secrets_valid_until"}),
            previous_secrets_valid_until=[
                p.expires_at for p in sub.previous_secrets if p.expires_at > now
            ],
        )


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_... signing secret; shown only now")


class SecretRotated(BaseModel):
    id: str
    secret: str = Field(description="The new signing secret; shown only now")
    previous_valid_until: datetime


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: EventType
    channel: Channel
    destination: str
    subscription_id: str | None
    status: DeliveryStatus
    attempts: list[DeliveryAttempt]
    next_attempt_at: datetime | None
    error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls.model_validate(d.model_dump(include=set(cls.model_fields)))


async def _get(state: State, sub_id: str) -> Subscription:
    sub = await state.subscriptions.get(sub_id)
    if sub is None:
        raise ApiError(404, "webhook_not_found", f"no webhook subscription {sub_id!r}")
    return sub


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, dependencies=[Admin])
async def create_webhook(body: WebhookIn, state: State) -> WebhookCreated:
    """Subscribe a URL to job events. The response carries the signing secret, once."""
    limit = state.settings.max_subscriptions
    if len(await state.subscriptions.all()) >= limit:
        raise ApiError(
            409,
            "too_many_subscriptions",
            f"there are already {limit} webhook subscriptions (CONVEYOR_MAX_SUBSCRIPTIONS); "
            "delete one first",
            limit=limit,
        )
    now = utcnow()
    sub = Subscription(
        id=new_subscription_id(),
        url=str(body.url),
        events=body.events,
        description=body.description,
        enabled=body.enabled,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    await state.subscriptions.insert(sub)
    await _announce_change(state)
    return WebhookCreated(**WebhookOut.of(sub).model_dump(), secret=sub.secret)


async def _announce_change(state: AppState) -> None:
    """Notifiers cache subscriptions; tell them to reload (their TTL covers a miss)."""
    try:
        await state.publisher.publish_control({"action": SUBSCRIPTIONS_CHANGED})
    except BrokerUnavailableError as exc:
        log.warning(
            "subscription change not announced; notifiers see it within their TTL", error=str(exc)
        )


@router.get("/webhooks", dependencies=[Admin])
async def list_webhooks(state: State) -> list[WebhookOut]:
    return [WebhookOut.of(s) for s in await state.subscriptions.all()]


@router.get("/webhooks/{sub_id}", responses=NOT_FOUND, dependencies=[Admin])
async def get_webhook(sub_id: str, state: State) -> WebhookOut:
    return WebhookOut.of(await _get(state, sub_id))


@router.patch("/webhooks/{sub_id}", responses=NOT_FOUND, dependencies=[Admin])
async def update_webhook(sub_id: str, body: WebhookPatch, state: State) -> WebhookOut:
    fields = body.model_dump(exclude_unset=True, mode="json")
    if fields.get("enabled"):  # a fresh start: the health counters too
        fields |= {"disabled_reason": None, "failed_deliveries": 0, "failing_since": None}
    updated = await state.subscriptions.update(sub_id, fields)
    if updated is None:
        raise ApiError(404, "webhook_not_found", f"no webhook subscription {sub_id!r}")
    await _announce_change(state)
    return WebhookOut.of(updated)


@router.delete(
    "/webhooks/{sub_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    dependencies=[Admin],
)
async def delete_webhook(sub_id: str, state: State) -> Response:
    if not await state.subscriptions.delete(sub_id):
        raise ApiError(404, "webhook_not_found", f"no webhook subscription {sub_id!r}")
    await _announce_change(state)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/webhooks/{sub_id}/rotate-secret", responses=NOT_FOUND, dependencies=[Admin])
async def rotate_secret(
    sub_id: str,
    state: State,
    previous_valid_s: Annotated[int, Query(ge=0, le=7 * 86400)] = 86400,
) -> SecretRotated:
    """A new secret; the old one keeps signing too (a second signature) for
    ``previous_valid_s`` seconds, so receivers can switch without a gap."""
    sub = await _get(state, sub_id)
    now = utcnow()
    until = now + timedelta(seconds=previous_valid_s)
    kept = [p for p in sub.previous_secrets if p.expires_at > now]
    if previous_valid_s:
        kept.append(PreviousSecret(secret=sub.secret, expires_at=until))
    secret = new_secret()
    # One write, and only over the version read: two rotations at once cannot
    # both answer with a secret while only one of them is stored.
    updated = await state.subscriptions.update(
        sub_id,
        {"secret": secret, "previous_secrets": [p.model_dump() for p in kept]},
        if_updated_at=sub.updated_at,
    )
    if updated is None:
        await _get(state, sub_id)  # 404 if it was deleted meanwhile
        raise ApiError(
            409, "rotated_concurrently", "the subscription changed meanwhile; rotate again"
        )
    return SecretRotated(id=sub_id, secret=secret, previous_valid_until=until)


@router.get("/jobs/{job_id}/deliveries", tags=["jobs"], dependencies=[Read])
async def job_deliveries(job_id: str, state: State) -> list[DeliveryOut]:
    """Every webhook and email delivery for the job's events, each with all attempts."""
    if await state.store.get(job_id) is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id!r}", job_id=job_id)
    return [DeliveryOut.of(d) for d in await state.deliveries.for_job(job_id)]
