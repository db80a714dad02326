"""The fan-out behind ``GET /v1/events/stream``.

One :class:`StreamHub` per API process. While at least one client watches (and
``linger_s`` after the last one leaves) it holds an exclusive, auto-delete queue
bound to the durable events exchange (``job.*``: retrying, completed, failed,
cancelled) and to the live exchange (queued, started, progress), on the API's
consume connection, and announces that it watches (``announce``, see
:mod:`conveyor_kernel.live`) so that workers and APIs send live events at all.
Watching costs nothing until someone does.
The queue is capped (``x-max-length``, oldest dropped) so a stalled API cannot
pile events up in the broker.

Each event gets the id ``<epoch>-<seq>`` (``epoch``: this process) and enters a
replay buffer. A client that reconnects with ``Last-Event-ID`` gets what it
missed if every event since is still known: same process, watched without a
gap since, not yet pushed out of the buffer. Otherwise it gets ``resync`` and
refetches. A client whose queue fills up (it reads slower than events come) is
dropped with ``dropped`` instead of being buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from conveyor_kernel.broker import BROKER_ERRORS
from conveyor_kernel.errors import BrokerUnavailableError
from conveyor_kernel.live import (
    ANNOUNCE_EVERY_S,
    BATCH_ROUTING_KEY,
    LiveEvent,
    from_job_event,
    parse_batch,
)
from conveyor_kernel.logs import get_logger
from conveyor_kernel.topology import EVENTS_BINDING_KEY, Topology, live_exchange_name

log = get_logger(__name__)

QUEUE_MAX_LENGTH = 10_000


@dataclass(frozen=True)
class Numbered:
    seq: int
    event: LiveEvent


@dataclass(frozen=True)
class Filters:
    job_id: str | None = None
    job_type: str | None = None
    statuses: frozenset[str] = frozenset()

    def match(self, event: LiveEvent) -> bool:
        return (
            (self.job_id is None or event.job_id == self.job_id)
            and (self.job_type is None or event.job_type == self.job_type)
            and (not self.statuses or event.status.value in self.statuses)
        )


@dataclass(eq=False)
class Subscriber:
    filters: Filters
    queue: asyncio.Queue[Numbered | None]
    replay: list[Numbered] = field(default_factory=list)
    resync: str | None = None  # why the Last-Event-ID could not be resumed
    dropped: bool = False


class StreamHub:
    def __init__(
        self,
        connection: AbstractRobustConnection,
        topology: Topology,
        announce: Callable[[], Awaitable[None]],
        *,
        buffer_size: int,
        client_queue: int,
        linger_s: float,
        on_drop: Callable[[], None] = lambda: None,
    ) -> None:
        self._connection = connection
        self._topology = topology
        self._announce = announce
        self._announcer: asyncio.Task[None] | None = None
        self._client_queue = client_queue
        self._linger_s = linger_s
        self._on_drop = on_drop
        self.epoch = secrets.token_hex(4)
        self._seq = 0
        self._bound_at: int | None = None  # seq when the current binding began
        self._buffer: deque[Numbered] = deque(maxlen=buffer_size)
        self.subscribers: set[Subscriber] = set()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._lock = asyncio.Lock()
        self._unbind: asyncio.TimerHandle | None = None

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    async def subscribe(self, filters: Filters, last_event_id: str | None) -> Subscriber:
        if self._unbind is not None:
            self._unbind.cancel()
            self._unbind = None
        await self._bind()
        sub = Subscriber(filters, asyncio.Queue(maxsize=self._client_queue))
        if last_event_id is not None:  # no await from here on: nothing slips in between
            sub.resync = self._replay_into(sub, last_event_id)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers and self._unbind is None:
            loop = asyncio.get_running_loop()
            self._unbind = loop.call_later(
                self._linger_s, lambda: asyncio.ensure_future(self._release())
            )

    def _replay_into(self, sub: Subscriber, last_event_id: str) -> str | None:
        epoch, _, seq_text = last_event_id.partition("-")
        if epoch != self.epoch or not seq_text.isdigit():
            return "the last event id is from another API process or a restart"
        seq = int(seq_text)
        oldest = self._buffer[0].seq if self._buffer else self._seq + 1
        if self._bound_at is None or seq < self._bound_at or seq > self._seq:
            return "events after the last event id were not watched"
        if seq + 1 < oldest:
            return "events after the last event id left the replay buffer"
        sub.replay = [n for n in self._buffer if n.seq > seq and sub.filters.match(n.event)]
        return None

    async def _bind(self) -> None:
        async with self._lock:
            if self._queue is not None:
                return
            try:
                channel = await self._connection.channel()
                queue = await channel.declare_queue(
                    exclusive=True,
                    auto_delete=True,
                    arguments={"x-max-length": QUEUE_MAX_LENGTH, "x-overflow": "drop-head"},
                )
                await queue.bind(self._topology.events_exchange, EVENTS_BINDING_KEY)
                await queue.bind(live_exchange_name(self._topology.namespace), BATCH_ROUTING_KEY)
                await queue.consume(self._on_message, no_ack=True)
            except BROKER_ERRORS as exc:
                raise BrokerUnavailableError(f"event stream: {type(exc).__name__}") from exc
            channel.reopen_callbacks.add(self._on_reopen)
            self._channel, self._queue = channel, queue
            self._bound_at = self._seq
            await self._announce()
            self._announcer = asyncio.create_task(self._keep_announcing())
            log.info("event stream: watching", queue=queue.name)

    async def _keep_announcing(self) -> None:
        while True:
            await asyncio.sleep(ANNOUNCE_EVERY_S)
            await self._announce()

    def _on_reopen(self, *_: object) -> None:
        """The channel came back (a broker restart): events in between are unknown."""
        self._gap("the broker connection was restored")

    def _gap(self, reason: str) -> None:
        self._seq += 1  # no event has this seq: ids from before it cannot resume
        self._bound_at = self._seq if self._queue is not None else None
        for sub in list(self.subscribers):
            sub.resync = reason
            self._offer(sub, None)

    async def _release(self) -> None:
        async with self._lock:
            self._unbind = None
            if self.subscribers or self._channel is None:
                return
            channel, self._channel, self._queue = self._channel, None, None
            self._stop_announcing()
            self._gap("events were not watched for a while")
            with contextlib.suppress(*BROKER_ERRORS):
                await channel.close()
            log.info("event stream: nobody watching; unbound")

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if message.exchange == self._topology.events_exchange:
            event = from_job_event(message.body)
            events = [] if event is None else [event]
        else:
            events = parse_batch(message.body)
        for each in events:
            self._publish(each)

    def _publish(self, event: LiveEvent) -> None:
        self._seq += 1
        numbered = Numbered(self._seq, event)
        self._buffer.append(numbered)
        for sub in list(self.subscribers):
            if sub.filters.match(event):
                self._offer(sub, numbered)

    def _offer(self, sub: Subscriber, item: Numbered | None) -> None:
        """Queue ``item`` (``None``: wake the client to read ``resync``/``dropped``)."""
        if sub.dropped:
            return
        try:
            sub.queue.put_nowait(item)
        except asyncio.QueueFull:
            sub.dropped = True
            self._on_drop()
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)

    def _stop_announcing(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
            self._announcer = None

    async def close(self) -> None:
        if self._unbind is not None:
            self._unbind.cancel()
        self._stop_announcing()
        with contextlib.suppress(*BROKER_ERRORS):
            if self._channel is not None:
                await self._channel.close()
