"""Broker connections, the confirmed publisher and queue statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustConnection,
    DeliveryMode,
)
from pamqp.commands import Basic

from conveyor_kernel.errors import BrokerUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import JobEnvelope, utcnow
from conveyor_kernel.topology import (
    DELIVER_ROUTING_KEY,
    PARKING_ROUTING_KEY,
    WORK_ROUTING_KEY,
    Topology,
    declare,
    delay_routing_key,
    delay_tier,
)
from conveyor_kernel.tracing import TRACEPARENT, current_traceparent

log = get_logger(__name__)

# What aio-pika/aiormq raise when the broker is gone, refuses or times out.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aio_pika.exceptions.AMQPException,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    RuntimeError,  # aio-pika raises RuntimeError on a closed channel in some paths
)


async def settle(op: Awaitable[object]) -> None:
    """Await an ack/nack/reject; if the channel died, the broker redelivers anyway."""
    try:
        await op
    except BROKER_ERRORS as exc:
        log.warning("could not settle message; the broker will redeliver it", error=str(exc))


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """A robust connection (reconnects and restores channels, queues and consumers)."""
    return await aio_pika.connect_robust(
        url, client_properties={"connection_name": name}, timeout=10
    )


def connection_is_open(connection: AbstractRobustConnection | None) -> bool:
    return connection is not None and not connection.is_closed and connection.connected.is_set()


class Publisher:
    """Publishes job envelopes persistent, confirmed and ``mandatory``.

    A publish returns only after the broker confirmed the message; a nack, an
    unroutable return, a confirm timeout or a lost connection raise
    :class:`BrokerUnavailableError`, which callers treat as "not accepted".
    """

    def __init__(
        self, connection: AbstractRobustConnection, topology: Topology, confirm_timeout_s: float
    ) -> None:
        self._connection = connection
        self._topology = topology
        self._timeout = confirm_timeout_s
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}

    async def open(self) -> None:
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        declared = await declare(self._channel, self._topology)
        self._exchanges = declared.exchanges

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    @property
    def ready(self) -> bool:
        return (
            connection_is_open(self._connection)
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def publish_job(self, envelope: JobEnvelope, trace: str | None = None) -> None:
        """To the work queue, or through a delay tier if ``not_before`` is a second off.
        ``trace``: the job's ``traceparent`` (:mod:`conveyor_kernel.tracing`)."""
        await self._publish_due(
            self._job_message(envelope, trace),
            envelope.not_before,
            self._topology.jobs_exchange,
            WORK_ROUTING_KEY,
            self._topology.delay_exchange,
        )

    async def publish_event(self, body: bytes, event_type: str, event_id: str) -> None:
        """A job event to the events topic exchange (routing key = event type),
        carrying the current span's context."""
        message = aio_pika.Message(
            body=body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=event_id,
            type=event_type,
            headers=_trace_headers(current_traceparent()),
        )
        await self._publish(message, event_type, self._topology.events_exchange)

    async def publish_delivery(
        self, body: bytes, message_id: str, not_before: datetime | None
    ) -> None:
        """A notifier delivery task, now or through a notifier delay tier, carrying
        the current span's context."""
        message = aio_pika.Message(
            body=body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=message_id,
            headers=_trace_headers(current_traceparent()),
        )
        await self._publish_due(
            message,
            not_before,
            self._topology.notifier_exchange,
            DELIVER_ROUTING_KEY,
            self._topology.notifier_delay_exchange,
        )

    async def _publish_due(
        self,
        message: aio_pika.Message,
        not_before: datetime | None,
        exchange: str,
        routing_key: str,
        delay_exchange: str,
    ) -> None:
        remaining = (not_before - utcnow()).total_seconds() if not_before else 0.0
        tier = delay_tier(remaining)
        if tier is None:
            await self._publish(message, routing_key, exchange)
        else:
            await self._publish(message, delay_routing_key(tier), delay_exchange)

    async def park(self, body: bytes, reason: str, headers: dict[str, Any]) -> None:
        """Put a message in the parking lot with ``x-conveyor-reason`` (and more) headers."""
        message = aio_pika.Message(
            body=body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            headers={"x-conveyor-reason": reason, **headers},
        )
        await self._publish(message, PARKING_ROUTING_KEY, self._topology.dead_letter_exchange)

    async def queue_held(self, name: str) -> bool:
        """Whether the exclusive queue ``name`` exists, i.e. the connection that
        declared it is open (a worker's liveness queue). A plain, not robust,
        channel: a passive declare of a missing queue closes it, and a robust
        one would reopen and declare again."""
        transport = self._connection.transport if self.ready else None
        if transport is None:
            raise BrokerUnavailableError("broker connection is not open")
        channel = None
        try:
            async with asyncio.timeout(self._timeout):
                channel = await transport.connection.channel(publisher_confirms=False)
                await channel.queue_declare(name, passive=True)
        except aiormq.exceptions.ChannelLockedResource:
            return True  # exclusive to another connection: its owner is connected
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        except BROKER_ERRORS as exc:
            raise BrokerUnavailableError(f"queue check failed: {type(exc).__name__}") from exc
        finally:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(*BROKER_ERRORS):
                    await channel.close()
        return True

    async def publish_control(self, body: dict[str, Any]) -> None:
        """Tell every worker something (fanout; fine if no worker listens right now)."""
        message = aio_pika.Message(body=json.dumps(body).encode(), content_type="application/json")
        await self._publish(message, "", self._topology.control_exchange, mandatory=False)

    def _job_message(self, envelope: JobEnvelope, trace: str | None) -> aio_pika.Message:
        headers: dict[str, Any] = {"x-conveyor-envelope": envelope.v}
        if trace:
            headers[TRACEPARENT] = trace
        return aio_pika.Message(
            body=envelope.model_dump_json().encode(),
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            priority=envelope.priority,
            message_id=f"{envelope.job_id}:{envelope.attempt}",
            type=envelope.type,
            headers=headers,
        )

    async def _publish(
        self, message: aio_pika.Message, routing_key: str, exchange: str, *, mandatory: bool = True
    ) -> None:
        target = self._exchanges.get(exchange)
        if target is None or not self.ready:
            raise BrokerUnavailableError("broker connection is not open")
        try:
            confirmation = await target.publish(
                message, routing_key=routing_key, mandatory=mandatory, timeout=self._timeout
            )
        except aio_pika.exceptions.DeliveryError as exc:
            raise BrokerUnavailableError(f"broker refused the message: {exc}") from exc
        except BROKER_ERRORS as exc:
            raise BrokerUnavailableError(f"publish failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(confirmation, Basic.Ack):
            raise BrokerUnavailableError(f"broker did not ack: {confirmation!r}")


def _trace_headers(traceparent: str | None) -> dict[str, Any] | None:
    return {TRACEPARENT: traceparent} if traceparent else None


@dataclass(frozen=True)
class QueueStats:
    name: str
    messages: int
    consumers: int


async def queue_stats(channel: AbstractChannel, queue_name: str) -> QueueStats:
    """Depth and consumer count of a queue (passive declare; the queue must exist).

    The declare goes to the underlying channel: a robust channel answers a
    passive ``declare_queue`` of a known queue from its cache, with stale counts.
    """
    underlay = await channel.get_underlay_channel()
    result = await underlay.queue_declare(queue=queue_name, passive=True)
    return QueueStats(
        name=queue_name,
        messages=result.message_count or 0,
        consumers=result.consumer_count or 0,
    )
