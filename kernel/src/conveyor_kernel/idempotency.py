"""Idempotency keys: the same ``Idempotency-Key`` and body return the original jobs.

A key is claimed by inserting ``{_id: key}`` (the unique ``_id`` makes the claim
atomic); the claim records the request's fingerprint and, once the jobs are
accepted, their ids. Keys expire after a window: a TTL index removes them on
MongoDB, and an expired key found before the TTL monitor ran is treated as
absent, so the window holds on servers without TTL support too (FerretDB v1).

A claim whose request never finished (the API process died) holds the key only
for a short lease (``LEASE_S``, longer than any request can take); after it, a
retry with the key takes the claim over instead of getting 409 for the whole
window. The job ids are chosen before the claim and kept in it (``planned``),
so the taker submits exactly the jobs the dead request meant to: those it
stored already are answered as they are (the outbox publishes them), only the
missing ones are submitted. One taker per expired lease: a unique marker insert
decides (atomic on FerretDB too). A request that failed (and so kept no job)
releases the key at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from conveyor_kernel.model import utcnow
from conveyor_kernel.mongo import Document, ensure_ttl_index, store_errors

KEYS_COLLECTION = "idempotency_keys"
LEASE_S = 60.0  # an unfinished claim's hold on its key (requests time out well before)
MAX_KEY_LENGTH = 255


def fingerprint(body: Any) -> str:
    """A stable hash of a JSON-able request body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claimed:
    """This request owns the key: submit ``job_ids``, then ``complete`` or ``release``.

    ``taken_over``: an earlier request with the key died or failed; some of the jobs
    may be stored already.
    """

    job_ids: list[str]
    taken_over: bool = False


@dataclass(frozen=True)
class Replay:
    job_ids: list[str]


@dataclass(frozen=True)
class Conflict:
    reason: str  # "different_body" or "in_progress"


class IdempotencyKeys:
    def __init__(
        self,
        client: AsyncMongoClient[Document],
        db_name: str,
        ttl_s: float,
        lease_s: float = LEASE_S,
    ) -> None:
        self._col = client[db_name][KEYS_COLLECTION]
        self._ttl = timedelta(seconds=ttl_s)
        self._lease = timedelta(seconds=lease_s)

    async def ensure_indexes(self) -> None:
        await ensure_ttl_index(self._col, "expires_at")

    async def claim(self, key: str, fp: str, planned: list[str]) -> Claimed | Replay | Conflict:
        """Claim ``key`` for a request with fingerprint ``fp`` that would create the
        jobs ``planned`` (their ids)."""
        for _ in range(3):
            now = utcnow()
            try:
                async with store_errors():
                    await self._col.insert_one(
                        {
                            "_id": key,
                            "fingerprint": fp,
                            "job_ids": None,
                            "planned": planned,
                            "created_at": now,
                            "lease_until": now + self._lease,
                            "expires_at": now + self._ttl,
                        }
                    )
                return Claimed(planned)
            except DuplicateKeyError:
                pass
            async with store_errors():
                doc = await self._col.find_one({"_id": key})
                if doc is None:
                    continue  # expired meanwhile: try again
                if doc["expires_at"] <= now:
                    await self._col.delete_one({"_id": key, "expires_at": doc["expires_at"]})
                    continue
            if doc["fingerprint"] != fp:
                return Conflict("different_body")
            if doc["job_ids"] is not None:
                return Replay(job_ids=list(doc["job_ids"]))
            lease = doc.get("lease_until")
            if lease is not None and lease <= now:
                return await self._take_over(key, doc, planned, now)
            return Conflict("in_progress")
        return Conflict("in_progress")

    async def _take_over(
        self, key: str, doc: Document, planned: list[str], now: datetime
    ) -> Claimed | Conflict:
        """Its request died or failed: one retry (the marker's inserter) takes it."""
        marker = f"{key}\n{doc['lease_until'].isoformat()}"  # no header value has a newline
        try:
            async with store_errors():
                await self._col.insert_one(
                    {
                        "_id": marker,
                        "fingerprint": None,
                        "job_ids": None,
                        "expires_at": doc["expires_at"],
                    }
                )
        except DuplicateKeyError:
            return Conflict("in_progress")
        async with store_errors():
            await self._col.update_one({"_id": key}, {"$set": {"lease_until": now + self._lease}})
        return Claimed(list(doc.get("planned") or planned), taken_over=True)

    async def complete(self, key: str, job_ids: list[str]) -> None:
        async with store_errors():
            await self._col.update_one({"_id": key}, {"$set": {"job_ids": job_ids}})

    async def release(self, key: str) -> None:
        """Give the key back after a failed request (it kept no job), so the client
        may retry with it, with another body too."""
        async with store_errors():
            await self._col.delete_one({"_id": key, "job_ids": None})
