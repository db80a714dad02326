"""The FastAPI application and its lifespan (connections open here, never at import)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import FastAPI

from conveyor_api import problems
from conveyor_api.auth import Authenticator
from conveyor_api.committer import SubmitCommitter
from conveyor_api.guards import add_browser_guards
from conveyor_api.keys import KeyStore
from conveyor_api.limits import BodySizeLimit
from conveyor_api.metrics import ApiMetrics, MetricsMiddleware, watch_queues
from conveyor_api.routes import (
    batch,
    dead_letters,
    health,
    jobs,
    keys,
    stats,
    ui,
    webhooks,
)
from conveyor_api.routes import (
    events as events_routes,
)
from conveyor_api.routes import (
    schedules as schedule_routes,
)
from conveyor_api.scheduler import run_scheduler
from conveyor_api.schedules import ScheduleStore
from conveyor_api.settings import ApiSettings
from conveyor_api.state import AppState
from conveyor_api.statscache import StatsCache
from conveyor_api.watching import open_live
from conveyor_kernel import __version__
from conveyor_kernel.broker import BROKER_ERRORS, Publisher, connect
from conveyor_kernel.cancellations import Cancellations
from conveyor_kernel.claims import Claims
from conveyor_kernel.commit import Committer
from conveyor_kernel.counts import JobCounts, run_flusher, run_folder
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.events import Events
from conveyor_kernel.idempotency import IdempotencyKeys
from conveyor_kernel.logs import get_logger
from conveyor_kernel.mongo import open_client
from conveyor_kernel.notifications import DeliveryStore, SubscriptionStore
from conveyor_kernel.outbox import Outbox, run_relay
from conveyor_kernel.registry import load_registry
from conveyor_kernel.retention import Retention, run_sweeper
from conveyor_kernel.runtime import cancel_tasks, retry_until_ready
from conveyor_kernel.sealing import Sealer
from conveyor_kernel.store import JobStore
from conveyor_kernel.topology import build_topology
from conveyor_kernel.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = get_logger(__name__)


def start_background(
    state: AppState, retention: Retention, counts: JobCounts
) -> list[asyncio.Task[None]]:
    """The outbox relay, the job counts' flusher and folder, the retention sweep, the
    scheduler and the queue gauges' poller if enabled."""
    settings = state.settings
    owner = f"api-{uuid.uuid4().hex[:12]}"
    tasks = [
        asyncio.create_task(run_flusher(counts, state.store.tally, settings.counts_flush_s)),
        asyncio.create_task(run_folder(counts, owner, settings.counts_fold_s)),
        asyncio.create_task(
            run_relay(
                state.store,
                state.outbox,
                state.publisher,
                settings.relay_after_s,
                events=state.events,
            )
        ),
    ]
    if settings.retention_sweep_s:
        sweep = run_sweeper(retention, settings.retention_sweep_s, settings.retention_sweep_batch)
        tasks.append(asyncio.create_task(sweep))
    if settings.scheduler_interval_s:
        tasks.append(asyncio.create_task(run_scheduler(state, settings.scheduler_interval_s)))
    if settings.queue_metrics_interval_s:
        tasks.append(
            asyncio.create_task(
                watch_queues(
                    state.connection,
                    state.topology,
                    state.metrics,
                    settings.queue_metrics_interval_s,
                )
            )
        )
    return tasks


def warn_insecure(settings: ApiSettings) -> None:
    if settings.admin_key is None:
        log.warning(
            "CONVEYOR_ADMIN_KEY is not set: only stored API keys are accepted "
            "(create them with an admin key; make run generates one in .infra/admin-key)"
        )
    if not settings.secrets_key:
        log.warning("CONVEYOR_SECRETS_KEY is not set: webhook secrets are stored unsealed")


def create_app(settings: ApiSettings, tracing: Tracing | None = None) -> FastAPI:
    """The API; ``tracing`` defaults to off (``conveyor-api`` passes
    :meth:`Tracing.from_env`)."""
    metrics = ApiMetrics()
    tracing = tracing or Tracing("conveyor-api")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = load_registry(settings.handler_modules)
        topology = build_topology(settings.namespace)
        mongo = open_client(settings, "conveyor-api", metrics.registry)
        store = JobStore(mongo, settings.mongodb_db)
        outbox = Outbox(mongo, settings.mongodb_db)
        idempotency = IdempotencyKeys(mongo, settings.mongodb_db, settings.idempotency_ttl_s)
        claims = Claims(mongo, settings.mongodb_db)
        subscriptions = SubscriptionStore(mongo, settings.mongodb_db, Sealer(settings.secrets_key))
        deliveries = DeliveryStore(mongo, settings.mongodb_db)
        cancellations = Cancellations(mongo, settings.mongodb_db)
        key_store = KeyStore(mongo, settings.mongodb_db)
        retention = Retention(mongo, settings.mongodb_db, store.tally)
        counts = JobCounts(mongo, settings.mongodb_db)
        schedules = ScheduleStore(mongo, settings.mongodb_db)
        for collection in (
            key_store,
            counts,
            retention,
            schedules,
            store,
            outbox,
            idempotency,
            claims,
            subscriptions,
            deliveries,
            cancellations,
        ):
            await retry_until_ready("mongodb", collection.ensure_indexes, (StoreUnavailableError,))
        connection = await retry_until_ready(
            "rabbitmq", lambda: connect(settings.amqp_url, "conveyor-api publish"), BROKER_ERRORS
        )
        publisher = Publisher(connection, topology, settings.publish_timeout_s)
        await publisher.open()
        events = await Events.open(mongo, settings, publisher)
        live = await open_live(settings, topology, connection, publisher, metrics)
        submits = SubmitCommitter(store, outbox, publisher, tracing=tracing)
        submits.start()
        stats_cache = StatsCache(counts, store.tally, settings.stats_timeout_s)
        app.state.conveyor = AppState(
            settings=settings,
            registry=registry,
            topology=topology,
            store=store,
            outbox=outbox,
            idempotency=idempotency,
            claims=claims,
            publisher=publisher,
            connection=connection,
            metrics=metrics,
            events=events,
            subscriptions=subscriptions,
            deliveries=deliveries,
            submits=submits,
            cancellations=cancellations,
            committer=Committer(store, events, publisher, outbox),
            stats=stats_cache,
            keys=key_store,
            auth=Authenticator.of(settings, key_store),
            live=live.feed,
            stream=live.hub,
            schedules=schedules,
            tracing=tracing,
        )
        background = start_background(app.state.conveyor, retention, counts)
        warn_insecure(settings)
        log.info("api ready", port=settings.api_port, job_types=registry.names())
        try:
            yield
        finally:
            await cancel_tasks(background)
            await submits.stop()
            await app.state.conveyor.auth.close()
            await live.close()
            with contextlib.suppress(*BROKER_ERRORS):
                await publisher.close()
                await connection.close()
            await mongo.close()
            await tracing.shutdown()
            log.info("api stopped")

    app = FastAPI(
        title="Conveyor",
        version=__version__,
        summary="Background jobs as a service: REST in front, RabbitMQ in the middle, "
        "workers behind, results in MongoDB.",
        lifespan=lifespan,
        docs_url="/docs" if settings.public_docs else None,
        redoc_url="/redoc" if settings.public_docs else None,
        openapi_url="/openapi.json" if settings.public_docs else None,
    )
    install_routes(app, settings, metrics)
    if tracing.provider is not None:
        instrument_app(app, tracing.provider)
    return app


def instrument_app(app: FastAPI, provider: TracerProvider) -> None:
    """Server spans for requests (outermost middleware; they continue an incoming
    ``traceparent``). Not for probes, scrapes and the dashboard's files, and no
    span per ASGI message (an event stream would make thousands)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: PLC0415

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls="/healthz$,/readyz$,/metrics$,/ui(/|$)",
        exclude_spans=["receive", "send"],
    )


def install_routes(app: FastAPI, settings: ApiSettings, metrics: ApiMetrics) -> None:
    """Routes, error handlers and middleware (outermost last)."""
    problems.install(app)
    for routes in (
        batch,
        jobs,
        schedule_routes,
        stats,
        dead_letters,
        webhooks,
        keys,
        events_routes,
        health,
    ):
        app.include_router(routes.router)
    ui.install(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        per_path={"/v1/jobs/batch": settings.max_batch_request_bytes},
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    add_browser_guards(app, settings)
