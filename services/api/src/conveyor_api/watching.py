"""The API's side of live events: its ``job.queued`` feed, the event stream's hub,
and the listener that learns when anyone (this or another replica) watches.

A consume connection of its own (publish and consume never share one) carries
the hub's queue and a private queue on the control fanout, where watching
announcements arrive (:mod:`conveyor_kernel.live`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from conveyor_api.metrics import ApiMetrics
from conveyor_api.settings import ApiSettings
from conveyor_api.stream import StreamHub
from conveyor_kernel.broker import BROKER_ERRORS, Publisher, connect
from conveyor_kernel.errors import BrokerUnavailableError
from conveyor_kernel.live import ANNOUNCE_TTL_S, LiveFeed, watching_announcement
from conveyor_kernel.logs import get_logger
from conveyor_kernel.topology import Topology

log = get_logger(__name__)


@dataclass
class Live:
    feed: LiveFeed
    hub: StreamHub
    connection: AbstractRobustConnection
    channel: AbstractChannel

    async def close(self) -> None:
        await self.hub.close()
        with contextlib.suppress(*BROKER_ERRORS):
            await self.feed.close()
            await self.channel.close()
            await self.connection.close()


async def open_live(
    settings: ApiSettings,
    topology: Topology,
    publish_connection: AbstractRobustConnection,
    publisher: Publisher,
    metrics: ApiMetrics,
) -> Live:
    feed = LiveFeed(publish_connection, topology)
    await feed.open()
    connection = await connect(settings.amqp_url, "conveyor-api consume")
    channel = await connection.channel()
    control = await channel.declare_queue(exclusive=True, auto_delete=True)
    await control.bind(topology.control_exchange)

    async def on_control(message: AbstractIncomingMessage) -> None:
        try:
            body = json.loads(message.body)
        except ValueError:
            return
        if isinstance(body, dict):
            feed.on_control(body)

    await control.consume(on_control, no_ack=True)

    async def announce() -> None:
        feed.watching_for(ANNOUNCE_TTL_S)  # this replica at once, the others by fanout
        try:
            await publisher.publish_control(watching_announcement())
        except BrokerUnavailableError as exc:
            log.warning("watching announcement not sent", error=str(exc))

    hub = StreamHub(
        connection,
        topology,
        announce,
        buffer_size=settings.stream_buffer,
        client_queue=settings.stream_client_queue,
        linger_s=settings.stream_linger_s,
        on_drop=metrics.stream_dropped.inc,
    )
    return Live(feed, hub, connection, channel)
