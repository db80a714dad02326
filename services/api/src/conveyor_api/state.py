"""What the lifespan opens and the routes use, as typed ``Annotated`` dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from aio_pika.abc import AbstractRobustConnection
from fastapi import Depends, Request

from conveyor_api.auth import Authenticator
from conveyor_api.committer import SubmitCommitter
from conveyor_api.keys import KeyStore
from conveyor_api.metrics import ApiMetrics
from conveyor_api.schedules import ScheduleStore
from conveyor_api.settings import ApiSettings
from conveyor_api.statscache import StatsCache
from conveyor_api.stream import StreamHub
from conveyor_kernel.broker import Publisher
from conveyor_kernel.cancellations import Cancellations
from conveyor_kernel.claims import Claims
from conveyor_kernel.commit import Committer
from conveyor_kernel.events import Events
from conveyor_kernel.idempotency import IdempotencyKeys
from conveyor_kernel.live import LiveFeed
from conveyor_kernel.notifications import DeliveryStore, SubscriptionStore
from conveyor_kernel.outbox import Outbox
from conveyor_kernel.registry import HandlerRegistry
from conveyor_kernel.store import JobStore
from conveyor_kernel.topology import Topology
from conveyor_kernel.tracing import Tracing


@dataclass
class AppState:
    settings: ApiSettings
    registry: HandlerRegistry
    topology: Topology
    store: JobStore
    outbox: Outbox
    idempotency: IdempotencyKeys
    claims: Claims
    publisher: Publisher
    connection: AbstractRobustConnection
    metrics: ApiMetrics
    events: Events
    subscriptions: SubscriptionStore
    deliveries: DeliveryStore
    submits: SubmitCommitter
    cancellations: Cancellations
    committer: Committer
    stats: StatsCache
    keys: KeyStore
    auth: Authenticator
    live: LiveFeed
    stream: StreamHub
    schedules: ScheduleStore
    tracing: Tracing


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.conveyor
    return state


State = Annotated[AppState, Depends(get_state)]
