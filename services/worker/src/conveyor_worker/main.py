"""Worker process: consume the priority work queue, run handlers, record outcomes.

Run N of these side by side; they share nothing but RabbitMQ and MongoDB.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Protocol

import aiormq
from pymongo import AsyncMongoClient

from conveyor_kernel import runtime
from conveyor_kernel.broker import BROKER_ERRORS, Publisher, connect
from conveyor_kernel.cancellations import Cancellations
from conveyor_kernel.commit import Committer
from conveyor_kernel.counts import JobCounts, run_flusher
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.eventgate import EventGate
from conveyor_kernel.events import Events
from conveyor_kernel.live import LiveFeed
from conveyor_kernel.logs import configure_logging, get_logger
from conveyor_kernel.mongo import Document, open_client
from conveyor_kernel.ops import OpsServer
from conveyor_kernel.outbox import Outbox, run_relay
from conveyor_kernel.registry import load_registry
from conveyor_kernel.runtime import cancel_tasks, retry_until_ready, stop_event
from conveyor_kernel.settings import load_settings
from conveyor_kernel.store import JobStore
from conveyor_kernel.topology import build_topology, declare
from conveyor_kernel.tracing import Tracing
from conveyor_worker.cancels import CancelWatch
from conveyor_worker.consumer import JobConsumer
from conveyor_worker.liveness import Liveness, new_session
from conveyor_worker.metrics import WorkerMetrics
from conveyor_worker.settings import WorkerSettings

log = get_logger(__name__)


def _start_background(
    settings: WorkerSettings,
    mongo: AsyncMongoClient[Document],
    *,
    store: JobStore,
    outbox: Outbox,
    publisher: Publisher,
    events: Events,
) -> list[asyncio.Task[None]]:
    """The outbox relay and the job counts' flusher."""
    counts = JobCounts(mongo, settings.mongodb_db)
    return [
        asyncio.create_task(
            run_relay(store, outbox, publisher, settings.relay_after_s, events=events)
        ),
        asyncio.create_task(run_flusher(counts, store.tally, settings.counts_flush_s)),
    ]


async def run(
    settings: WorkerSettings,
    *,
    stop: asyncio.Event | None = None,
    tracing: Tracing | None = None,
) -> None:
    """Run until ``stop`` is set (default: SIGTERM or SIGINT). ``tracing`` defaults
    to what the environment configures (:meth:`Tracing.from_env`)."""
    stop = stop or stop_event()
    tracing = tracing or Tracing.from_env("conveyor-worker")
    registry = load_registry(settings.handler_modules)
    topology = build_topology(settings.namespace)
    metrics = WorkerMetrics()
    mongo = open_client(settings, "conveyor-worker", metrics.registry)
    store = JobStore(mongo, settings.mongodb_db)
    outbox = Outbox(mongo, settings.mongodb_db)
    cancellations = Cancellations(mongo, settings.mongodb_db)
    for collection in (store, outbox, cancellations):
        await retry_until_ready("mongodb", collection.ensure_indexes, (StoreUnavailableError,))
    publish_conn = await retry_until_ready(
        "rabbitmq",
        lambda: connect(settings.amqp_url, _conn_name(settings, "publish")),
        BROKER_ERRORS,
    )
    consume_conn = await connect(settings.amqp_url, _conn_name(settings, "consume"))
    publisher = Publisher(publish_conn, topology, settings.publish_timeout_s)
    await publisher.open()
    live_feed = LiveFeed(publish_conn, topology)
    await live_feed.open()
    gate = await EventGate.start_for(mongo, settings, lambda: live_feed.watched)
    events = await Events.open(mongo, settings, publisher, gate)
    channel = await consume_conn.channel()
    await channel.set_qos(prefetch_count=settings.prefetch)
    channel.close_callbacks.add(_log_channel_closed)
    declared = await declare(channel, topology)
    queue = declared.queues[topology.work_queue]
    cancels = CancelWatch(cancellations)
    liveness = Liveness(
        publisher, topology.namespace, new_session(settings.worker_id), settings.worker_recheck_s
    )
    consumer = JobConsumer(
        store,
        cancels,
        Committer(store, events, publisher, outbox),
        publisher,
        registry,
        liveness=liveness,
        live=live_feed,
        gate=gate,
        tracing=tracing,
        worker_id=settings.worker_id,
        metrics=metrics,
        record_running_after_s=settings.worker_record_running_after_s,
    )
    ops = await OpsServer.serve(
        metrics.registry,
        [publish_conn, consume_conn],
        mongo,
        settings.metrics_host,
        settings.metrics_port,
    )
    # A private queue on the control fanout: cancel requests (running jobs are
    # stopped; waiting ones are read before they run). Bound before the request log
    # is loaded, and both before consuming, so no request falls in between.
    # It is also this process's liveness queue (conveyor_worker.liveness): exclusive,
    # so it lives exactly as long as the connection, and on its own channel, so a
    # channel closed under the jobs (RabbitMQ's consumer timeout) leaves it be.
    control_channel = await consume_conn.channel()
    control = await control_channel.declare_queue(liveness.queue, exclusive=True)
    await control.bind(topology.control_exchange)
    await control.consume(consumer.on_control, no_ack=True)
    await retry_until_ready("mongodb", cancels.start, (StoreUnavailableError,))
    tag = await queue.consume(consumer.on_message)
    background = _start_background(
        settings, mongo, store=store, outbox=outbox, publisher=publisher, events=events
    )
    log.info(
        "worker ready",
        worker=settings.worker_id,
        queue=topology.work_queue,
        prefetch=settings.prefetch,
        handlers=registry.names(),
    )

    await stop.wait()
    log.info("shutting down: no new messages", in_flight=consumer.in_flight)
    with contextlib.suppress(*BROKER_ERRORS):
        await queue.cancel(tag)
    await gate.stop()
    await cancels.stop()
    await consumer.drain(settings.worker_shutdown_grace_s)
    await cancel_tasks(background)  # the counts flush once more: after the last job
    await close_quietly(channel, control_channel, live_feed, publisher, consume_conn, publish_conn)
    if ops is not None:
        await ops.stop()
    await mongo.close()
    await tracing.shutdown()
    log.info("worker stopped")


def _conn_name(settings: WorkerSettings, role: str) -> str:
    return f"conveyor-worker {settings.worker_id} {role}"


async def close_quietly(*closables: Closable) -> None:
    """Close each; a broker already gone is no error at shutdown."""
    for closable in closables:
        with contextlib.suppress(*BROKER_ERRORS):
            await closable.close()


class Closable(Protocol):
    def close(self) -> Awaitable[object]: ...


def _log_channel_closed(_channel: object, exc: BaseException | None) -> None:
    # A plain ChannelClosed is our own close; a subclass carries the broker's reason.
    if isinstance(exc, Exception) and type(exc) is not aiormq.exceptions.ChannelClosed:
        log.warning("jobs channel closed by the broker; it reopens", error=str(exc))


def main() -> None:
    settings = load_settings(WorkerSettings, "conveyor-worker")
    configure_logging(settings.log_level, settings.log_json)
    runtime.run(run(settings))


if __name__ == "__main__":
    main()
