"""Notifier process: job events in, webhooks and emails out.

Consumes ``<ns>.notifier.events`` (fan-out into deliveries) and
``<ns>.notifier.deliveries`` (one attempt per message, retries through broker
delay tiers). Stateless: run as many as needed side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from functools import partial

import httpx
from aio_pika.abc import AbstractIncomingMessage

from conveyor_kernel import runtime
from conveyor_kernel.broker import BROKER_ERRORS, Publisher, connect
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.logs import configure_logging, get_logger
from conveyor_kernel.mongo import open_client
from conveyor_kernel.notifications import SUBSCRIPTIONS_CHANGED, DeliveryStore
from conveyor_kernel.ops import OpsServer
from conveyor_kernel.runtime import retry_until_ready, stop_event
from conveyor_kernel.sealing import Sealer
from conveyor_kernel.settings import load_settings
from conveyor_kernel.topology import build_topology, declare
from conveyor_kernel.tracing import Tracing
from conveyor_notifier.delivery import Deliverer
from conveyor_notifier.email import build_transport
from conveyor_notifier.fanout import Fanout
from conveyor_notifier.health import HealthPolicy, SubscriptionHealth
from conveyor_notifier.inflight import Inflight
from conveyor_notifier.metrics import NotifierMetrics
from conveyor_notifier.outcome import RetryPolicy
from conveyor_notifier.settings import NotifierSettings
from conveyor_notifier.subcache import CachedSubscriptions
from conveyor_notifier.webhook import WebhookSender, instrument_http

log = get_logger(__name__)
EVENTS_PREFETCH = 32


def job_webhook_secrets(settings: NotifierSettings) -> list[str]:
    current = [settings.webhook_secret] if settings.webhook_secret else []
    return [s.get_secret_value() for s in (*current, *settings.webhook_previous_secrets)]


async def run(
    settings: NotifierSettings,
    *,
    stop: asyncio.Event | None = None,
    tracing: Tracing | None = None,
) -> None:
    """Run until ``stop`` is set (default: SIGTERM or SIGINT). ``tracing`` defaults
    to what the environment configures (:meth:`Tracing.from_env`)."""
    stop = stop or stop_event()
    tracing = tracing or Tracing.from_env("conveyor-notifier")
    topology = build_topology(settings.namespace)
    metrics = NotifierMetrics()
    mongo = open_client(settings, "conveyor-notifier", metrics.registry)
    deliveries = DeliveryStore(mongo, settings.mongodb_db)
    subscriptions = CachedSubscriptions(
        mongo,
        settings.mongodb_db,
        settings.notify_subscription_cache_s,
        Sealer(settings.secrets_key),
    )
    for collection in (deliveries, subscriptions):
        await retry_until_ready("mongodb", collection.ensure_indexes, (StoreUnavailableError,))
    publish_conn = await retry_until_ready(
        "rabbitmq", lambda: connect(settings.amqp_url, "conveyor-notifier publish"), BROKER_ERRORS
    )
    consume_conn = await connect(settings.amqp_url, "conveyor-notifier consume")
    publisher = Publisher(publish_conn, topology, settings.publish_timeout_s)
    await publisher.open()
    http = httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: requests go to checked addresses
        limits=httpx.Limits(max_connections=settings.notify_concurrency * 2),
    )
    if tracing.provider is not None:
        instrument_http(http, tracing.provider)
    webhooks = WebhookSender(
        http,
        allowed=settings.notify_allowed_networks,
        timeout_s=settings.webhook_timeout_s,
        max_redirects=settings.webhook_max_redirects,
    )
    policy = RetryPolicy(
        tuple(settings.notify_retry_schedule_s),
        settings.notify_retry_jitter,
        settings.notify_retry_after_max_s,
    )
    deliverer = Inflight(
        Deliverer(
            deliveries,
            subscriptions,
            publisher,
            webhooks,
            build_transport(settings, http),
            policy=policy,
            health=SubscriptionHealth(
                subscriptions,
                HealthPolicy(
                    settings.notify_disable_after_failed_deliveries,
                    settings.notify_disable_after_failing_s,
                ),
                metrics,
            ),
            job_webhook_secrets=job_webhook_secrets(settings),
            metrics=metrics,
            tracing=tracing,
        ).on_message
    )
    fanout = Inflight(Fanout(deliveries, subscriptions, publisher, metrics, tracing).on_message)
    metrics.in_flight.set_function(lambda: len(deliverer) + len(fanout))
    ops = await OpsServer.serve(
        metrics.registry,
        [publish_conn, consume_conn],
        mongo,
        settings.metrics_host,
        settings.metrics_port,
    )

    events_channel = await consume_conn.channel()
    await events_channel.set_qos(prefetch_count=EVENTS_PREFETCH)
    declared = await declare(events_channel, topology)
    delivery_channel = await consume_conn.channel()
    await delivery_channel.set_qos(prefetch_count=settings.notify_concurrency)
    events_queue = declared.queues[topology.notifier_events_queue]
    deliveries_queue = await delivery_channel.get_queue(topology.deliveries_queue)
    events_tag = await events_queue.consume(fanout.on_message)
    # Subscription changes the API announces on the control fanout.
    control = await events_channel.declare_queue(exclusive=True, auto_delete=True)
    await control.bind(declared.exchanges[topology.control_exchange])
    await control.consume(partial(on_control, invalidate=subscriptions.invalidate), no_ack=True)
    deliveries_tag = await deliveries_queue.consume(deliverer.on_message)
    log.info(
        "notifier ready",
        events_queue=topology.notifier_events_queue,
        deliveries_queue=topology.deliveries_queue,
        concurrency=settings.notify_concurrency,
        email_transport=settings.email_transport,
        max_attempts=policy.max_attempts,
    )

    await stop.wait()
    log.info("shutting down: no new messages", in_flight=len(deliverer) + len(fanout))
    with contextlib.suppress(*BROKER_ERRORS):
        await events_queue.cancel(events_tag)
        await deliveries_queue.cancel(deliveries_tag)
    await fanout.drain(settings.notify_shutdown_grace_s)
    await deliverer.drain(settings.notify_shutdown_grace_s)
    for closable in (events_channel, delivery_channel, publisher, consume_conn, publish_conn):
        with contextlib.suppress(*BROKER_ERRORS):
            await closable.close()
    await http.aclose()
    if ops is not None:
        await ops.stop()
    await mongo.close()
    await tracing.shutdown()
    log.info("notifier stopped")


async def on_control(message: AbstractIncomingMessage, invalidate: Callable[[], None]) -> None:
    """``{"action": "subscriptions_changed"}`` drops the subscription cache."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        if json.loads(message.body).get("action") == SUBSCRIPTIONS_CHANGED:
            invalidate()


def main() -> None:
    settings = load_settings(NotifierSettings, "conveyor-notifier")
    configure_logging(settings.log_level, settings.log_json)
    runtime.run(run(settings))


if __name__ == "__main__":
    main()
