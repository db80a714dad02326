"""Webhook subscriptions and the delivery log (MongoDB), shared by the API and notifier.

``webhooks`` holds standing subscriptions; ``deliveries`` one document per
(event, destination) with every attempt. A delivery's ``_id`` is
``<event id>:<destination key>``, so a redelivered event never creates it
twice; after its insert a delivery has one writer (the notifier holding its
message), and each write is a compare-and-set on ``rev``.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

import pymongo
from pydantic import BaseModel, ConfigDict, Field
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from conveyor_kernel.model import utcnow
from conveyor_kernel.mongo import Document, create_missing_indexes, store_errors
from conveyor_kernel.notify_spec import EventType
from conveyor_kernel.sealing import Sealer

SUBSCRIPTIONS_COLLECTION = "webhooks"
DELIVERIES_COLLECTION = "deliveries"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_subscription_id() -> str:
    return "wh_" + secrets.token_hex(12)


class PreviousSecret(BaseModel):
    secret: str
    expires_at: datetime


class Subscription(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    url: str
    events: list[EventType]
    description: str | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    # Health (conveyor_notifier.health): deliveries that failed in a row, and since
    # when every attempt failed; both reset by a delivered attempt.
    failed_deliveries: int = 0
    failing_since: datetime | None = None
    secret: str
    previous_secrets: list[PreviousSecret] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime

    def signing_secrets(self, now: datetime) -> list[str]:
        """The current secret, then those rotated out but still valid (several signatures)."""
        return [self.secret, *(p.secret for p in self.previous_secrets if p.expires_at > now)]


SUBSCRIPTIONS_CHANGED = "subscriptions_changed"  # control fanout action


class SubscriptionStore:
    """Subscriptions, their signing secrets sealed at rest (:mod:`conveyor_kernel.sealing`)."""

    def __init__(
        self, client: AsyncMongoClient[Document], db_name: str, sealer: Sealer | None = None
    ) -> None:
        self._col = client[db_name][SUBSCRIPTIONS_COLLECTION]
        self._sealer = sealer or Sealer([])

    def _sealed(self, fields: dict[str, Any]) -> dict[str, Any]:
        out = dict(fields)
        if "secret" in out:
            out["secret"] = self._sealer.seal(out["secret"])
        if "previous_secrets" in out:
            out["previous_secrets"] = [
                {**p, "secret": self._sealer.seal(p["secret"])} for p in out["previous_secrets"]
            ]
        return out

    def _load(self, doc: Document) -> Subscription:
        doc = dict(doc)
        doc["secret"] = self._sealer.open(doc["secret"])
        doc["previous_secrets"] = [
            {**p, "secret": self._sealer.open(p["secret"])} for p in doc.get("previous_secrets", [])
        ]
        return Subscription.model_validate(doc)

    async def ensure_indexes(self) -> None:
        await create_missing_indexes(self._col, [pymongo.IndexModel("created_at")])

    async def insert(self, sub: Subscription) -> None:
        async with store_errors():
            await self._col.insert_one(self._sealed(sub.model_dump(by_alias=True)))

    async def get(self, sub_id: str) -> Subscription | None:
        async with store_errors():
            doc = await self._col.find_one({"_id": sub_id})
        return None if doc is None else self._load(doc)

    async def all(self) -> list[Subscription]:
        async with store_errors():
            docs = await self._col.find({}).sort("created_at", 1).to_list()
        return [self._load(d) for d in docs]

    async def wanted_event_types(self) -> frozenset[EventType]:
        """The event types some enabled subscription wants (no secrets read)."""
        async with store_errors():
            docs = await self._col.find({"enabled": True}, {"events": 1}).to_list()
        return frozenset(EventType(e) for d in docs for e in d.get("events", ()))

    async def matching(self, event_type: EventType) -> list[Subscription]:
        """Enabled subscriptions that want ``event_type``."""
        async with store_errors():
            docs = await self._col.find({"enabled": True, "events": event_type.value}).to_list()
        return [self._load(d) for d in docs]

    async def update(
        self, sub_id: str, fields: dict[str, Any], *, if_updated_at: datetime | None = None
    ) -> Subscription | None:
        """Set ``fields`` (secrets sealed) in one write; with ``if_updated_at``, only
        if nobody changed the subscription since (``None`` then means changed or gone)."""
        query: dict[str, Any] = {"_id": sub_id}
        if if_updated_at is not None:
            query["updated_at"] = if_updated_at
        async with store_errors():
            doc = await self._col.find_one_and_update(
                query,
                {"$set": {**self._sealed(fields), "updated_at": utcnow()}},
                return_document=pymongo.ReturnDocument.AFTER,
            )
        return None if doc is None else self._load(doc)

    async def delete(self, sub_id: str) -> bool:
        async with store_errors():
            result = await self._col.delete_one({"_id": sub_id})
        return result.deleted_count == 1


class Channel(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED}


class DeliveryAttempt(BaseModel):
    number: int
    at: datetime
    latency_ms: float
    status_code: int | None = Field(default=None, description="HTTP status or SMTP reply code")
    error: str | None = None
    outcome: DeliveryStatus
    next_attempt_at: datetime | None = None


class Delivery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    event_id: str
    event_type: EventType
    job_id: str
    job_type: str = ""
    channel: Channel
    destination: str = Field(description="The URL, or the recipients")
    subscription_id: str | None = None
    event: str = Field(description="The event (JSON) this delivery carries")
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: list[DeliveryAttempt] = Field(default_factory=list)
    next_attempt: int = 1
    next_attempt_at: datetime | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    rev: int = 0


class DeliveryStore:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._col = client[db_name][DELIVERIES_COLLECTION]

    async def ensure_indexes(self) -> None:
        await create_missing_indexes(
            self._col, [pymongo.IndexModel([("job_id", 1), ("created_at", 1)], name="job_created")]
        )

    async def insert_new(self, delivery: Delivery) -> bool:
        """``False`` if it already exists (the event was delivered to us before)."""
        try:
            async with store_errors():
                await self._col.insert_one(delivery.model_dump(by_alias=True))
        except DuplicateKeyError:
            return False
        return True

    async def get(self, delivery_id: str) -> Delivery | None:
        async with store_errors():
            doc = await self._col.find_one({"_id": delivery_id})
        return None if doc is None else Delivery.model_validate(doc)

    async def compare_and_set(self, delivery: Delivery) -> Delivery | None:
        new = delivery.model_copy(update={"rev": delivery.rev + 1, "updated_at": utcnow()})
        async with store_errors():
            result = await self._col.replace_one(
                {"_id": delivery.id, "rev": delivery.rev}, new.model_dump(by_alias=True)
            )
        return new if result.matched_count == 1 else None

    async def for_job(self, job_id: str, limit: int = 500) -> list[Delivery]:
        async with store_errors():
            docs = (
                await self._col.find({"job_id": job_id})
                .sort([("created_at", 1), ("_id", 1)])
                .limit(limit)
                .to_list()
            )
        return [Delivery.model_validate(d) for d in docs]
