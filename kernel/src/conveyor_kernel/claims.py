"""One-shot claims: the first inserter of a key wins (the unique ``_id`` decides).

Used where two operators may act at once - e.g. two redrives of the same dead
letter - and exactly one must go ahead. An insert with a unique ``_id`` is
atomic on MongoDB and on FerretDB alike (unlike a conditional update on
FerretDB v1), so the claim holds even there.
"""

from __future__ import annotations

from datetime import timedelta

from pymongo import AsyncMongoClient

from conveyor_kernel.model import utcnow
from conveyor_kernel.mongo import Document, ensure_ttl_index, insert_new, store_errors

CLAIMS_COLLECTION = "claims"
CLAIM_TTL = timedelta(days=7)


class Claims:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._col = client[db_name][CLAIMS_COLLECTION]

    async def ensure_indexes(self) -> None:
        await ensure_ttl_index(self._col, "expires_at")

    async def claim(self, key: str, owner: str) -> bool:
        now = utcnow()
        claim = {"_id": key, "owner": owner, "at": now, "expires_at": now + CLAIM_TTL}
        return await insert_new(self._col, claim)

    async def release(self, key: str, owner: str) -> None:
        """Give back a claim whose work failed (only the owner's), so it can be retried."""
        async with store_errors():
            await self._col.delete_one({"_id": key, "owner": owner})
