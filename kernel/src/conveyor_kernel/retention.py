"""Retention: finished jobs and their deliveries are deleted once ``expires_at``
has passed.

``expires_at`` is set by the transition that finishes a job
(:mod:`conveyor_kernel.machine`): completed or cancelled, ``retention_s`` later;
failed, never while it is a dead letter, and ``failed_retention_s`` after a
purge. Waiting and running jobs have none, and the sweep also checks the
status, so they are never deleted.

The sweep runs in every API replica (deletes are idempotent): each round takes
at most ``batch`` expired jobs, deletes their deliveries, then the jobs. That
is a bounded amount of work per interval, whatever the backlog, and it works on
FerretDB v1, which has no TTL indexes. Where the server has them (MongoDB), a
TTL index on ``expires_at`` removes jobs a day late as a backstop if no sweeper
runs; deliveries are only removed by the sweep.
"""

from __future__ import annotations

import asyncio

from pymongo import AsyncMongoClient

from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import FINISHED_STATUSES, utcnow
from conveyor_kernel.mongo import Document, ensure_ttl_index, store_errors
from conveyor_kernel.notifications import DELIVERIES_COLLECTION
from conveyor_kernel.store import JOBS_COLLECTION

log = get_logger(__name__)

BACKSTOP_S = 86_400  # the TTL index's delay after expires_at


class Retention:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._jobs = client[db_name][JOBS_COLLECTION]
        self._deliveries = client[db_name][DELIVERIES_COLLECTION]

    async def ensure_indexes(self) -> None:
        await ensure_ttl_index(self._jobs, "expires_at", after_s=BACKSTOP_S)

    async def sweep_once(self, batch: int) -> int:
        """Delete up to ``batch`` expired finished jobs and their deliveries."""
        now = utcnow()
        expired = {
            "expires_at": {"$lt": now},
            "status": {"$in": [s.value for s in FINISHED_STATUSES]},
        }
        async with store_errors():
            ids = [doc["_id"] async for doc in self._jobs.find(expired, {"_id": 1}).limit(batch)]
            if not ids:
                return 0
            await self._deliveries.delete_many({"job_id": {"$in": ids}})
            result = await self._jobs.delete_many({"_id": {"$in": ids}, **expired})
        return int(result.deleted_count)


async def run_sweeper(retention: Retention, interval_s: float, batch: int) -> None:
    """Sweep every ``interval_s`` until cancelled; a full batch sweeps again at once."""
    while True:
        try:
            deleted = await retention.sweep_once(batch)
        except StoreUnavailableError as exc:
            log.warning("retention sweep failed; will retry", error=str(exc))
            deleted = 0
        except Exception:
            log.exception("retention sweep crashed; will retry")
            deleted = 0
        if deleted:
            log.info("retention: expired jobs deleted", count=deleted)
        if deleted < batch:
            await asyncio.sleep(interval_s)
