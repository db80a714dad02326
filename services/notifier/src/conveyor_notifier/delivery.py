"""One delivery attempt per message: send, record the attempt, schedule the next.

The message is acked only after the attempt is recorded and, for a retry, the
next attempt's message is confirmed by the broker (through a delay tier). A
notifier killed mid-delivery leaves the message unacked: the broker redelivers
it and the attempt runs again (receivers de-duplicate on ``webhook-id``). If it
dies after recording a retry but before publishing it, the redelivered message
finds the delivery one attempt ahead and publishes the missing one.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime
from typing import Literal

import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conveyor_kernel import tracing
from conveyor_kernel.broker import Publisher, settle
from conveyor_kernel.errors import BrokerUnavailableError, StoreUnavailableError
from conveyor_kernel.events import JobEvent
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import utcnow
from conveyor_kernel.notifications import (
    Channel,
    Delivery,
    DeliveryStatus,
    DeliveryStore,
    Subscription,
    SubscriptionStore,
)
from conveyor_kernel.topology import delay_tier
from conveyor_kernel.tracing import Tracing
from conveyor_notifier.email import EmailTransport, Templates
from conveyor_notifier.health import SubscriptionHealth
from conveyor_notifier.metrics import NotifierMetrics
from conveyor_notifier.outcome import AttemptResult, RetryPolicy, record
from conveyor_notifier.webhook import WebhookSender

log = get_logger(__name__)
_jitter = random.SystemRandom()  # retry jitter, not crypto
OUTAGE_BACKOFF_S = 1.0


class DeliveryMessage(BaseModel):
    """The versioned body of a message on ``<ns>.notifier.deliveries``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    delivery_id: str = Field(min_length=1, max_length=300)
    attempt: int = Field(ge=1)
    not_before: datetime | None = None

    @property
    def message_id(self) -> str:
        return f"{self.delivery_id}#{self.attempt}"


class Deliverer:
    def __init__(
        self,
        deliveries: DeliveryStore,
        subscriptions: SubscriptionStore,
        publisher: Publisher,
        webhooks: WebhookSender,
        email: EmailTransport,
        *,
        policy: RetryPolicy,
        health: SubscriptionHealth,
        job_webhook_secrets: list[str],
        metrics: NotifierMetrics,
        tracing: Tracing,
    ) -> None:
        self._tracing = tracing
        self._health = health
        self._metrics = metrics
        self._deliveries = deliveries
        self._subscriptions = subscriptions
        self._publisher = publisher
        self._webhooks = webhooks
        self._email = email
        self._templates = Templates()
        self._policy = policy
        self._job_secrets = job_webhook_secrets

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            msg = DeliveryMessage.model_validate_json(message.body)
        except ValidationError:
            log.warning("not a delivery message; parking it", message_id=message.message_id)
            await settle(message.reject(requeue=False))
            return
        structlog.contextvars.bind_contextvars(delivery=msg.delivery_id, attempt=msg.attempt)
        attributes: dict[str, str | int] = {
            "conveyor.delivery.id": msg.delivery_id,
            "conveyor.delivery.attempt": msg.attempt,
        }
        with self._tracing.consume("deliver", message, attributes):
            await self._handle(message, msg)

    async def _handle(self, message: AbstractIncomingMessage, msg: DeliveryMessage) -> None:
        try:
            await self._process(message, msg)
        except (StoreUnavailableError, BrokerUnavailableError) as exc:
            log.warning("delivery interrupted; requeueing", error=str(exc))
            await asyncio.sleep(OUTAGE_BACKOFF_S)
            await settle(message.nack(requeue=True))
        except Exception:  # a bug or bad data: park it rather than stall the consumer
            log.exception("delivery failed unexpectedly; parking the message")
            await settle(message.reject(requeue=False))

    async def _process(self, message: AbstractIncomingMessage, msg: DeliveryMessage) -> None:
        if msg.not_before is not None:
            wait_s = (msg.not_before - utcnow()).total_seconds()
            if delay_tier(wait_s) is not None:  # back early from a tier: round again
                await self._publish(msg)
                await settle(message.ack())
                return
            if wait_s > 0:
                await asyncio.sleep(wait_s)
        delivery = await self._deliveries.get(msg.delivery_id)
        if delivery is None or delivery.status.final:
            await settle(message.ack())
            return
        structlog.contextvars.bind_contextvars(
            job_id=delivery.job_id,
            type=delivery.job_type,
            event_id=delivery.event_id,
            channel=delivery.channel.value,
        )
        if msg.attempt != delivery.next_attempt:
            if (
                message.redelivered  # not a duplicate copy: our own message, unacked
                and delivery.status is DeliveryStatus.RETRYING
                and msg.attempt == delivery.next_attempt - 1
            ):
                await self._schedule(delivery)  # we died between recording and publishing
            await settle(message.ack())
            return
        started = utcnow()
        clock = time.perf_counter()
        result, sub = await self._attempt(delivery)
        latency_ms = (time.perf_counter() - clock) * 1000
        updated = record(
            delivery,
            result,
            started=started,
            finished=utcnow(),
            latency_ms=latency_ms,
            policy=self._policy,
            rand=_jitter.random(),
        )
        stored = await self._deliveries.compare_and_set(updated)
        if stored is None:
            log.warning("delivery changed under us; dropping this attempt", delivery=delivery.id)
            await settle(message.ack())
            return
        self._metrics.attempt(stored, latency_ms / 1000)
        tracing.annotate({"conveyor.delivery.status": stored.status.value})
        if result.error:
            tracing.mark_failed(result.error)
        if sub is not None:
            await self._health.observe(sub, stored, result, started)
        log.info(
            "delivery attempt",
            status=stored.status.value,
            status_code=result.status_code,
            error=result.error,
            latency_ms=round(latency_ms, 1),
            next_attempt_at=stored.next_attempt_at.isoformat() if stored.next_attempt_at else None,
        )
        if stored.status is DeliveryStatus.RETRYING:
            await self._schedule(stored)
        await settle(message.ack())

    async def _schedule(self, delivery: Delivery) -> None:
        await self._publish(
            DeliveryMessage(
                delivery_id=delivery.id,
                attempt=delivery.next_attempt,
                not_before=delivery.next_attempt_at,
            )
        )

    async def _publish(self, msg: DeliveryMessage) -> None:
        await self._publisher.publish_delivery(
            msg.model_dump_json().encode(), msg.message_id, msg.not_before
        )

    async def _attempt(self, delivery: Delivery) -> tuple[AttemptResult, Subscription | None]:
        """Every channel's failure lands here as a result; a surprise is retryable.
        Also returns the (enabled) subscription the attempt was made for, if any."""
        sub = None
        try:
            event = JobEvent.model_validate_json(delivery.event)
            if delivery.channel is Channel.EMAIL:
                recipients = [r.strip() for r in delivery.destination.split(",")]
                mail = self._templates.render(event)
                return await self._email.send(recipients, mail, event.id), None
            if delivery.subscription_id is None:
                if not self._job_secrets:
                    return AttemptResult.permanent("CONVEYOR_WEBHOOK_SECRET is not set"), None
                secrets = self._job_secrets
            else:
                sub = await self._subscriptions.get(delivery.subscription_id)
                if sub is None:
                    return AttemptResult.permanent("subscription deleted"), None
                if not sub.enabled:
                    reason = f"subscription disabled: {sub.disabled_reason}"
                    return AttemptResult.permanent(reason), None
                secrets = sub.signing_secrets(utcnow())
            body = event.webhook_body()
            return await self._webhooks.send(delivery.destination, event.id, body, secrets), sub
        except (StoreUnavailableError, asyncio.CancelledError):
            raise
        except Exception as exc:  # one wrapper for the unexpected: log it, retry later
            log.exception("delivery attempt crashed", delivery=delivery.id)
            return AttemptResult.retry(f"internal error: {type(exc).__name__}: {exc}"), sub
