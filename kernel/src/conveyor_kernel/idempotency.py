"""Idempotency keys: the same ``Idempotency-Key`` and body return the original jobs.

A key is claimed by inserting ``{_id: key}`` (the unique ``_id`` makes the claim
atomic); the claim records the request's fingerprint and, once the jobs are
accepted, their ids. Keys expire after a window: a TTL index removes them on
MongoDB, and an expired key found before the TTL monitor ran is treated as
absent, so the window holds on servers without TTL support too (FerretDB v1).

A claim whose request never finished (the API process died) holds the key only
for a short lease (``LEASE_S``, longer than any request can take); after it, a
retry with the key takes the claim over instead of getting 409 for the whole
window. If the dead request had got as far as accepting its jobs, that retry
submits them again: the lease trades a rare duplicate for a key that unblocks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from conveyor_kernel.model import utcnow
from conveyor_kernel.store import Document, ensure_ttl_index, store_errors

KEYS_COLLECTION = "idempotency_keys"
LEASE_S = 60.0  # an unfinished claim's hold on its key (requests time out well before)
MAX_KEY_LENGTH = 255


def fingerprint(body: Any) -> str:
    """A stable hash of a JSON-able request body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claimed:
    """This request owns the key: do the work, then ``complete`` or ``release``."""


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

    async def claim(self, key: str, fp: str) -> Claimed | Replay | Conflict:
        for _ in range(3):
            now = utcnow()
            try:
                async with store_errors():
                    await self._col.insert_one(
                        {
                            "_id": key,
                            "fingerprint": fp,
                            "job_ids": None,
                            "created_at": now,
                            "lease_until": now + self._lease,
                            "expires_at": now + self._ttl,
                        }
                    )
                return Claimed()
            except DuplicateKeyError:
                pass
            async with store_errors():
                doc = await self._col.find_one({"_id": key})
                if doc is None:
                    continue  # released or expired meanwhile: try again
                if doc["expires_at"] <= now:
                    await self._col.delete_one({"_id": key, "expires_at": doc["expires_at"]})
                    continue
                lease = doc.get("lease_until")
                if doc["job_ids"] is None and lease is not None and lease <= now:
                    # Its request died mid-way: the lease is over, take the key over.
                    await self._col.delete_one({"_id": key, "job_ids": None, "lease_until": lease})
                    continue
            if doc["fingerprint"] != fp:
                return Conflict("different_body")
            if doc["job_ids"] is None:
                return Conflict("in_progress")
            return Replay(job_ids=list(doc["job_ids"]))
        return Conflict("in_progress")

    async def complete(self, key: str, job_ids: list[str]) -> None:
        async with store_errors():
            await self._col.update_one({"_id": key}, {"$set": {"job_ids": job_ids}})

    async def release(self, key: str) -> None:
        """Give the key back after a failed request, so the client may retry with it."""
        async with store_errors():
            await self._col.delete_one({"_id": key, "job_ids": None})
