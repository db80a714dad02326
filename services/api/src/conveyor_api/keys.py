"""API keys: random, shown once, stored only as a SHA-256 hash, with scopes.

A key is ``cvk_<id>_<secret>``: ``id`` (16 hex) finds the stored record, the
secret is 32 random bytes (base64url). SHA-256 suits such high-entropy tokens
(no password stretching is needed); the hash is compared in constant time.

Scopes: ``jobs:read`` (get, list, deliveries, stats, job types), ``jobs:write``
(submit, cancel, retry) and ``admin`` (everything: dead letters, webhooks,
deleting jobs, managing keys). ``CONVEYOR_ADMIN_KEY``, when set, is an admin key
that lives only in the settings (how compose, k8s and CI bootstrap).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from enum import StrEnum

import pymongo
from pydantic import BaseModel, ConfigDict, Field
from pymongo import AsyncMongoClient

from conveyor_kernel.mongo import Document, create_missing_indexes, store_errors

KEY_PREFIX = "cvk_"
KEYS_COLLECTION = "api_keys"
_TOKEN = re.compile(r"^cvk_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$")


class Scope(StrEnum):
    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    ADMIN = "admin"


class ApiKey(BaseModel):
    """The stored record (never the key itself)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    name: str
    scopes: list[Scope]
    hash: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    rate_per_s: float | None = None  # None: the server's default
    burst: int | None = None

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """``(id, token)`` for a new key."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def token_id(token: str) -> str | None:
    """The id part of a well-formed key, else ``None``."""
    match = _TOKEN.match(token)
    return match.group(1) if match else None


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class KeyStore:
    def __init__(self, client: AsyncMongoClient[Document], db_name: str) -> None:
        self._col = client[db_name][KEYS_COLLECTION]

    async def ensure_indexes(self) -> None:
        await create_missing_indexes(self._col, [pymongo.IndexModel("created_at")])

    async def insert(self, key: ApiKey) -> None:
        async with store_errors():
            await self._col.insert_one(key.model_dump(by_alias=True))

    async def get(self, key_id: str) -> ApiKey | None:
        async with store_errors():
            doc = await self._col.find_one({"_id": key_id})
        return None if doc is None else ApiKey.model_validate(doc)

    async def all(self) -> list[ApiKey]:
        async with store_errors():
            docs = await self._col.find({}).sort("created_at", 1).to_list()
        return [ApiKey.model_validate(d) for d in docs]

    async def delete(self, key_id: str) -> bool:
        async with store_errors():
            return (await self._col.delete_one({"_id": key_id})).deleted_count == 1

    async def touch(self, key_id: str, at: datetime) -> None:
        async with store_errors():
            await self._col.update_one({"_id": key_id}, {"$set": {"last_used_at": at}})
