"""RabbitMQ topology: every exchange and queue Conveyor uses, as frozen dataclasses.

Names come only from the helper functions below (services never spell a queue
name). :func:`declare` is idempotent: it declares the same arguments every
time, so running it at each process start is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from conveyor_kernel.model import MAX_PRIORITY

WORK_ROUTING_KEY = "work"
PARKING_ROUTING_KEY = "parking-lot"
DELIVER_ROUTING_KEY = "deliver"
EVENTS_BINDING_KEY = "job.*"

# Delay tiers (seconds). A waiting message sits in the largest tier that does
# not overshoot its due time; each tier queue has one fixed TTL, so a 1 s wait
# is never stuck behind a 1 h one (per-message TTLs would block at the head).
# When it comes back early, the worker sends it round again for the rest.
DELAY_TIERS_S: tuple[int, ...] = (1, 5, 30, 120, 600, 3600)


def delay_tier(remaining_s: float) -> int | None:
    """The largest tier not longer than ``remaining_s`` (``None``: due now)."""
    fitting = [t for t in DELAY_TIERS_S if t <= remaining_s]
    return fitting[-1] if fitting else None


def delay_routing_key(tier_s: int) -> str:
    return f"{tier_s}s"


def jobs_exchange_name(namespace: str) -> str:
    return f"{namespace}.jobs"


def dead_letter_exchange_name(namespace: str) -> str:
    return f"{namespace}.jobs.dlx"


def delay_exchange_name(namespace: str) -> str:
    return f"{namespace}.jobs.delay"


def delay_queue_name(namespace: str, tier_s: int) -> str:
    return f"{namespace}.jobs.delay.{delay_routing_key(tier_s)}"


def control_exchange_name(namespace: str) -> str:
    """Fanout of control messages (job cancellation) to every worker."""
    return f"{namespace}.control"


def liveness_queue_name(namespace: str, session: str) -> str:
    """A worker process's exclusive control queue: it exists exactly while that
    process's consume connection is open, so other workers can tell whether an
    attempt recorded with ``session`` may still be running."""
    return f"{namespace}.worker.{session}"


def work_queue_name(namespace: str) -> str:
    return f"{namespace}.jobs.work"


def parking_lot_queue_name(namespace: str) -> str:
    return f"{namespace}.jobs.parking-lot"


def events_exchange_name(namespace: str) -> str:
    """Topic exchange of job events; the routing key is the event type (``job.failed``)."""
    return f"{namespace}.events"


def live_exchange_name(namespace: str) -> str:
    """Topic exchange of transient live events (queued, started, progress) for
    watchers; the routing key is the kind (``job.started``)."""
    return f"{namespace}.live"


def notifier_events_queue_name(namespace: str) -> str:
    return f"{namespace}.notifier.events"


def notifier_exchange_name(namespace: str) -> str:
    return f"{namespace}.notifier"


def deliveries_queue_name(namespace: str) -> str:
    return f"{namespace}.notifier.deliveries"


def notifier_delay_exchange_name(namespace: str) -> str:
    return f"{namespace}.notifier.delay"


def notifier_delay_queue_name(namespace: str, tier_s: int) -> str:
    return f"{namespace}.notifier.delay.{delay_routing_key(tier_s)}"


def notifier_dead_letter_exchange_name(namespace: str) -> str:
    return f"{namespace}.notifier.dlx"


def notifier_parking_lot_queue_name(namespace: str) -> str:
    return f"{namespace}.notifier.parking-lot"


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: aio_pika.ExchangeType
    durable: bool = True


@dataclass(frozen=True)
class Binding:
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class QueueSpec:
    name: str
    bindings: tuple[Binding, ...]
    arguments: tuple[tuple[str, Any], ...] = ()
    durable: bool = True

    def argument_dict(self) -> dict[str, Any]:
        return dict(self.arguments)


@dataclass(frozen=True)
class Topology:
    namespace: str
    exchanges: tuple[ExchangeSpec, ...] = field(default=())
    queues: tuple[QueueSpec, ...] = field(default=())

    @property
    def jobs_exchange(self) -> str:
        return jobs_exchange_name(self.namespace)

    @property
    def delay_exchange(self) -> str:
        return delay_exchange_name(self.namespace)

    @property
    def control_exchange(self) -> str:
        return control_exchange_name(self.namespace)

    @property
    def dead_letter_exchange(self) -> str:
        return dead_letter_exchange_name(self.namespace)

    @property
    def work_queue(self) -> str:
        return work_queue_name(self.namespace)

    @property
    def parking_lot_queue(self) -> str:
        return parking_lot_queue_name(self.namespace)

    @property
    def events_exchange(self) -> str:
        return events_exchange_name(self.namespace)

    @property
    def notifier_events_queue(self) -> str:
        return notifier_events_queue_name(self.namespace)

    @property
    def notifier_exchange(self) -> str:
        return notifier_exchange_name(self.namespace)

    @property
    def notifier_delay_exchange(self) -> str:
        return notifier_delay_exchange_name(self.namespace)

    @property
    def deliveries_queue(self) -> str:
        return deliveries_queue_name(self.namespace)

    @property
    def notifier_parking_lot_queue(self) -> str:
        return notifier_parking_lot_queue_name(self.namespace)


def _delay_queues(
    name: Callable[[int], str], delay_x: str, target_x: str, target_key: str
) -> tuple[QueueSpec, ...]:
    """One queue per tier: fixed TTL, no consumers, expiry dead-letters to the target."""
    return tuple(
        QueueSpec(
            name(tier),
            bindings=(Binding(delay_x, delay_routing_key(tier)),),
            arguments=(
                ("x-queue-type", "classic"),
                ("x-message-ttl", tier * 1000),
                ("x-dead-letter-exchange", target_x),
                ("x-dead-letter-routing-key", target_key),
            ),
        )
        for tier in DELAY_TIERS_S
    )


def _notifier_part(namespace: str) -> tuple[tuple[ExchangeSpec, ...], tuple[QueueSpec, ...]]:
    """Events and the notifier's queues. Declared by every service, so events
    published while no notifier runs wait in ``<ns>.notifier.events``."""
    events_x = events_exchange_name(namespace)
    notifier_x = notifier_exchange_name(namespace)
    delay_x = notifier_delay_exchange_name(namespace)
    dlx = notifier_dead_letter_exchange_name(namespace)
    dead_lettering = (
        ("x-dead-letter-exchange", dlx),
        ("x-dead-letter-routing-key", PARKING_ROUTING_KEY),
    )
    exchanges = (
        ExchangeSpec(events_x, aio_pika.ExchangeType.TOPIC),
        ExchangeSpec(notifier_x, aio_pika.ExchangeType.DIRECT),
        ExchangeSpec(delay_x, aio_pika.ExchangeType.DIRECT),
        ExchangeSpec(dlx, aio_pika.ExchangeType.DIRECT),
    )
    queues = (
        QueueSpec(
            notifier_events_queue_name(namespace),
            bindings=(Binding(events_x, EVENTS_BINDING_KEY),),
            arguments=(("x-queue-type", "classic"), *dead_lettering),
        ),
        QueueSpec(
            deliveries_queue_name(namespace),
            bindings=(Binding(notifier_x, DELIVER_ROUTING_KEY),),
            arguments=(("x-queue-type", "classic"), *dead_lettering),
        ),
        QueueSpec(
            notifier_parking_lot_queue_name(namespace),
            bindings=(Binding(dlx, PARKING_ROUTING_KEY),),
            arguments=(("x-queue-type", "classic"),),
        ),
        *_delay_queues(
            lambda t: notifier_delay_queue_name(namespace, t),
            delay_x,
            notifier_x,
            DELIVER_ROUTING_KEY,
        ),
    )
    return exchanges, queues


def build_topology(namespace: str) -> Topology:
    """The job topology.

    ``<ns>.jobs`` (direct) routes ``work`` to the classic priority queue
    ``<ns>.jobs.work`` (``x-max-priority`` 10). Messages rejected without
    requeue dead-letter through ``<ns>.jobs.dlx`` into the parking lot
    ``<ns>.jobs.parking-lot``, where workers also park jobs that exhausted their
    retries and poison messages (with the reason in the headers).
    ``<ns>.jobs.delay`` (direct) routes ``<tier>s`` to the tier queue
    ``<ns>.jobs.delay.<tier>s`` (fixed ``x-message-ttl``, no consumers); an
    expired message dead-letters back to ``<ns>.jobs`` / ``work``.

    Job events go to ``<ns>.events`` (topic, key = event type) and wait in
    ``<ns>.notifier.events``; the notifier turns each into deliveries on
    ``<ns>.notifier.deliveries``, retried through ``<ns>.notifier.delay.<tier>s``;
    rejected messages park in ``<ns>.notifier.parking-lot``.
    """
    jobs_x = jobs_exchange_name(namespace)
    dlx = dead_letter_exchange_name(namespace)
    delay_x = delay_exchange_name(namespace)
    delay_queues = _delay_queues(
        lambda t: delay_queue_name(namespace, t), delay_x, jobs_x, WORK_ROUTING_KEY
    )
    notifier_exchanges, notifier_queues = _notifier_part(namespace)
    return Topology(
        namespace=namespace,
        exchanges=(
            ExchangeSpec(jobs_x, aio_pika.ExchangeType.DIRECT),
            ExchangeSpec(dlx, aio_pika.ExchangeType.DIRECT),
            ExchangeSpec(delay_x, aio_pika.ExchangeType.DIRECT),
            ExchangeSpec(control_exchange_name(namespace), aio_pika.ExchangeType.FANOUT),
            ExchangeSpec(live_exchange_name(namespace), aio_pika.ExchangeType.TOPIC),
            *notifier_exchanges,
        ),
        queues=(
            QueueSpec(
                work_queue_name(namespace),
                bindings=(Binding(jobs_x, WORK_ROUTING_KEY),),
                arguments=(
                    ("x-queue-type", "classic"),
                    ("x-max-priority", MAX_PRIORITY),
                    ("x-dead-letter-exchange", dlx),
                    ("x-dead-letter-routing-key", PARKING_ROUTING_KEY),
                ),
            ),
            QueueSpec(
                parking_lot_queue_name(namespace),
                bindings=(Binding(dlx, PARKING_ROUTING_KEY),),
                arguments=(("x-queue-type", "classic"),),
            ),
            *delay_queues,
            *notifier_queues,
        ),
    )


@dataclass
class Declared:
    exchanges: dict[str, AbstractExchange]
    queues: dict[str, AbstractQueue]


async def declare(channel: AbstractChannel, topology: Topology) -> Declared:
    """Declare every exchange, queue and binding of ``topology`` (idempotent)."""
    exchanges: dict[str, AbstractExchange] = {}
    for ex in topology.exchanges:
        exchanges[ex.name] = await channel.declare_exchange(ex.name, ex.type, durable=ex.durable)
    queues: dict[str, AbstractQueue] = {}
    for q in topology.queues:
        queue = await channel.declare_queue(q.name, durable=q.durable, arguments=q.argument_dict())
        for b in q.bindings:
            await queue.bind(exchanges[b.exchange], routing_key=b.routing_key)
        queues[q.name] = queue
    return Declared(exchanges=exchanges, queues=queues)


async def delete(channel: AbstractChannel, topology: Topology) -> None:
    """Delete every queue and exchange of ``topology`` (tests, benchmarks, teardown)."""
    for q in topology.queues:
        await channel.queue_delete(q.name)
    for ex in topology.exchanges:
        await channel.exchange_delete(ex.name)
