"""The log of cancel requests, so workers can run fresh messages without a read.

A job's message carries the job as published (``JobEnvelope.job``), so a
worker can run it without reading the store - unless it was cancelled since.
The API records every cancel here (one small insert) and announces it on the
control fanout; each worker keeps the recent ids in memory (fanout for speed,
a poll every few seconds for a signal it missed) and reads the store for those,
for redelivered messages and for messages older than what it knows.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import AsyncMongoClient, IndexModel

from conveyor_kernel.model import utcnow
from conveyor_kernel.mongo import Document, create_missing_indexes, insert_new, store_errors

CANCELLATIONS_COLLECTION = "cancellations"


class Cancellations:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._col = client[db_name][CANCELLATIONS_COLLECTION]

    async def ensure_indexes(self) -> None:
        await create_missing_indexes(self._col, [IndexModel("at", name="at")])

    async def record(self, job_id: str) -> None:
        """Idempotent: the first request's time is kept."""
        await insert_new(self._col, {"_id": job_id, "at": utcnow()})

    async def since(self, at: datetime) -> list[tuple[str, datetime]]:
        """``(job_id, requested_at)`` of every request at or after ``at``."""
        async with store_errors():
            docs = await self._col.find({"at": {"$gte": at}}).to_list()
        return [(str(d["_id"]), d["at"]) for d in docs]
