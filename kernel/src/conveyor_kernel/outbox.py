"""The outbox relay: publishes queued jobs whose broker confirm was never recorded.

A job document is written before its message is published; the confirm is
recorded as ``published_at``. If a process dies in between (or the broker
refused a retry's message), the document sits ``queued`` with no
``published_at``. This relay, run by the API and by every worker, publishes
those jobs again after ``grace_s``. Duplicates are harmless: the worker skips a
message whose attempt already started or finished.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from conveyor_kernel.broker import Publisher
from conveyor_kernel.errors import BrokerUnavailableError, StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import utcnow
from conveyor_kernel.store import JobStore

log = get_logger(__name__)


async def relay_once(
    store: JobStore, publisher: Publisher, grace_s: float, batch: int = 500
) -> int:
    """Publish one batch of stranded jobs; returns how many were published."""
    stranded = await store.unpublished(utcnow() - timedelta(seconds=grace_s), batch)
    published = 0
    for job in stranded:
        await publisher.publish_job(job.envelope())
        await store.mark_published(job.id, job.next_attempt, utcnow())
        published += 1
        log.info("outbox: republished", job_id=job.id, type=job.type, attempt=job.next_attempt)
    return published


async def run_relay(
    store: JobStore, publisher: Publisher, grace_s: float, interval_s: float | None = None
) -> None:
    """Loop forever (cancel to stop); outages are logged and retried next round."""
    interval = interval_s if interval_s is not None else max(1.0, grace_s / 3)
    while True:
        with contextlib.suppress(BrokerUnavailableError, StoreUnavailableError):
            try:
                await relay_once(store, publisher, grace_s)
            except (BrokerUnavailableError, StoreUnavailableError) as exc:
                log.warning("outbox: relay round failed, will retry", error=str(exc))
                raise
        await asyncio.sleep(interval)
