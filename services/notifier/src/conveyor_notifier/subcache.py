"""Subscriptions kept in memory, so an event nobody subscribed to costs no store call.

The enabled subscriptions are loaded at most once per ``ttl_s``. The API
announces every change on the control fanout (``subscriptions_changed``), and
the notifier's own changes (410 Gone disables one) drop the cache at once, so
the TTL only bounds staleness when such a signal is lost (a broker blip).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient

from conveyor_kernel.mongo import Document
from conveyor_kernel.notifications import Subscription, SubscriptionStore
from conveyor_kernel.notify_spec import EventType
from conveyor_kernel.sealing import Sealer


class CachedSubscriptions(SubscriptionStore):
    def __init__(
        self, client: AsyncMongoClient[Document], db_name: str, ttl_s: float, sealer: Sealer
    ) -> None:
        super().__init__(client, db_name, sealer)
        self._ttl_s = ttl_s
        self._enabled: list[Subscription] = []
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()
        self._generation = 0

    def invalidate(self) -> None:
        self._loaded_at = None
        self._generation += 1

    def _fresh(self) -> bool:
        return self._loaded_at is not None and time.monotonic() - self._loaded_at < self._ttl_s

    async def matching(self, event_type: EventType) -> list[Subscription]:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    generation, started = self._generation, time.monotonic()
                    self._enabled = [s for s in await self.all() if s.enabled]
                    if generation == self._generation:  # no change signalled meanwhile
                        self._loaded_at = started
        return [s for s in self._enabled if event_type in s.events]

    async def update(
        self, sub_id: str, fields: dict[str, Any], *, if_updated_at: datetime | None = None
    ) -> Subscription | None:
        try:
            return await super().update(sub_id, fields, if_updated_at=if_updated_at)
        finally:
            self.invalidate()
