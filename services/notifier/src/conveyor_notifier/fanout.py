"""From one job event to its deliveries: the job's own targets plus matching subscriptions.

Each delivery is inserted with a deterministic ``_id`` and its first attempt
published (confirmed) before the event is acked, so a crash anywhere makes the
broker redeliver the event and the fan-out resumes where it stopped.
"""

from __future__ import annotations

import asyncio

import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

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
    SubscriptionStore,
)
from conveyor_kernel.tracing import Tracing
from conveyor_notifier.delivery import DeliveryMessage
from conveyor_notifier.metrics import NotifierMetrics

log = get_logger(__name__)
OUTAGE_BACKOFF_S = 1.0


class Fanout:
    def __init__(
        self,
        deliveries: DeliveryStore,
        subscriptions: SubscriptionStore,
        publisher: Publisher,
        metrics: NotifierMetrics,
        tracing: Tracing,
    ) -> None:
        self._metrics = metrics
        self._tracing = tracing
        self._deliveries = deliveries
        self._subscriptions = subscriptions
        self._publisher = publisher

    async def plan(self, event: JobEvent) -> list[Delivery]:
        now = utcnow()

        def delivery(key: str, channel: Channel, destination: str, sub: str | None) -> Delivery:
            return Delivery(
                id=f"{event.id}:{key}",
                event_id=event.id,
                event_type=event.type,
                job_id=event.job.id,
                job_type=event.job.type,
                channel=channel,
                destination=destination,
                subscription_id=sub,
                event=event.model_dump_json(),
                created_at=now,
                updated_at=now,
            )

        planned: list[Delivery] = []
        notify = event.notify
        if notify and notify.webhook and event.type in notify.webhook.events:
            planned.append(delivery("job-webhook", Channel.WEBHOOK, str(notify.webhook.url), None))
        if notify and notify.email and event.type in notify.email.events:
            planned.append(delivery("job-email", Channel.EMAIL, ", ".join(notify.email.to), None))
        planned.extend(
            delivery(sub.id, Channel.WEBHOOK, sub.url, sub.id)
            for sub in await self._subscriptions.matching(event.type)
        )
        return planned

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            event = JobEvent.model_validate_json(message.body)
        except ValidationError as exc:
            log.warning(
                "not a valid job event; parking it",
                message_id=message.message_id,
                error=str(exc).replace("\n", "; ")[:500],
            )
            await settle(message.reject(requeue=False))
            return
        structlog.contextvars.bind_contextvars(
            job_id=event.job.id, type=event.job.type, event_id=event.id
        )
        attributes = {"conveyor.job.id": event.job.id, "conveyor.event.id": event.id}
        with self._tracing.consume(f"process {event.type.value}", message, attributes):
            await self._handle(message, event)

    async def _handle(self, message: AbstractIncomingMessage, event: JobEvent) -> None:
        try:
            published = await self._fan_out(event)
        except (StoreUnavailableError, BrokerUnavailableError) as exc:
            log.warning("fan-out interrupted; requeueing the event", error=str(exc))
            await asyncio.sleep(OUTAGE_BACKOFF_S)
            await settle(message.nack(requeue=True))
            return
        except Exception:  # a bug or bad data: park it rather than stall the consumer
            log.exception("fan-out failed; parking the event")
            await settle(message.reject(requeue=False))
            return
        self._metrics.events.labels(event.type.value).inc()
        log.debug("event fanned out", event_type=event.type.value, deliveries=published)
        await settle(message.ack())

    async def _fan_out(self, event: JobEvent) -> int:
        published = 0
        for planned in await self.plan(event):
            if not await self._deliveries.insert_new(planned):
                stored = await self._deliveries.get(planned.id)
                if stored is None or stored.status is not DeliveryStatus.PENDING or stored.attempts:
                    continue  # already under way from an earlier copy of this event
            message = DeliveryMessage(delivery_id=planned.id, attempt=1)
            await self._publisher.publish_delivery(
                message.model_dump_json().encode(), message.message_id, None
            )
            published += 1
        return published
