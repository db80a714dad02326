"""Which job events anybody consumes, so that none is built or published in vain.

A finished attempt's event (:mod:`conveyor_kernel.events`) is read by the
notifier (the job's own ``notify`` targets and the webhook subscriptions) and
by the API's event stream (only while it has clients). With no subscription,
no ``notify`` and nobody watching, publishing it costs the worker, the broker
and the notifier a confirmed message per job for nothing. :class:`EventGate`
answers :meth:`EventGate.wants` from memory:

* the job's ``notify`` names the event type: yes;
* a stream client is watching (:class:`conveyor_kernel.live.LiveFeed`): yes;
* some enabled subscription wants the type: yes. The wanted types are re-read
  every ``refresh_s`` (one small read of the subscriptions collection) and at
  once when the API announces a change on the control fanout
  (``subscriptions_changed``);
* while they are unknown (not loaded yet, a change announced and not re-read,
  the store unreachable): yes. The gate fails open, never closed.

An event that is not published is not put on the job's ``emitted`` list
either, so nothing re-sends it later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from pymongo import AsyncMongoClient

from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import Job
from conveyor_kernel.mongo import Document
from conveyor_kernel.notifications import SubscriptionStore
from conveyor_kernel.notify_spec import EventType
from conveyor_kernel.settings import ConveyorSettings

log = get_logger(__name__)


class EventGate:
    def __init__(
        self,
        subscriptions: SubscriptionStore,
        refresh_s: float,
        watched: Callable[[], bool] = lambda: False,
    ) -> None:
        self._subscriptions = subscriptions
        self._refresh_s = refresh_s
        self._watched = watched
        self._wanted: frozenset[EventType] | None = None  # None: unknown, so all
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start_for(
        cls,
        client: AsyncMongoClient[Document],
        settings: ConveyorSettings,
        watched: Callable[[], bool],
    ) -> EventGate:
        """The running gate ``settings`` configure, its first read done (so a worker
        knows the subscriptions before its first job); ``events_gate_refresh_s = 0``:
        an open gate, every event published."""
        refresh_s = settings.events_gate_refresh_s
        gate = cls(SubscriptionStore(client, settings.mongodb_db), refresh_s, watched)
        if refresh_s > 0:
            await gate.refresh()
            gate.start()
        return gate

    def wants(self, job: Job, kind: EventType) -> bool:
        if self._refresh_s <= 0:
            return True
        if job.notify is not None and job.notify.wants(kind):
            return True
        if self._watched():
            return True
        return self._wanted is None or kind in self._wanted

    def invalidate(self) -> None:
        """Subscriptions changed: publish everything until they are re-read."""
        self._wanted = None
        self._changed.set()

    async def refresh(self) -> None:
        self._changed.clear()
        try:
            wanted = await self._subscriptions.wanted_event_types()
        except StoreUnavailableError as exc:
            log.warning("event gate: subscriptions unknown; publishing every event", error=str(exc))
            self._wanted = None
            return
        if not self._changed.is_set():  # no change announced while reading
            self._wanted = wanted

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._refresh_s)
            try:
                await self.refresh()
            except Exception:  # a bug must not leave the gate closed
                log.exception("event gate: refresh failed; publishing every event")
                self._wanted = None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
