"""Who is calling, may they, and are they within their rate: one dependency per scope.

``Authorization: Bearer <key>`` on every route but ``/healthz`` and ``/readyz``
(``/metrics`` and ``/docs`` follow ``CONVEYOR_PUBLIC_METRICS`` and
``CONVEYOR_PUBLIC_DOCS``). A missing, unknown, expired or revoked key is a 401,
a key without the scope a 403, and a key over its rate a 429 with
``Retry-After`` and ``RateLimit-*`` headers; all with the JSON error body.

A verified key is remembered for ``CONVEYOR_KEY_CACHE_S`` (10 s), so the hot path
costs no store read per request; a revoked key stops working within that time on
other replicas (at once on the replica that revoked it). ``last_used_at`` is
written at most once a minute per key, off the request path. Rate limits are
token buckets in memory, so they apply per API replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Depends, Request
from pydantic import SecretStr

from conveyor_api.keys import ApiKey, KeyStore, Scope, same_hash, token_hash, token_id
from conveyor_api.problems import ApiError
from conveyor_api.settings import ApiSettings
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import utcnow

log = get_logger(__name__)
ADMIN_KEY_ID = "settings"  # the id CONVEYOR_ADMIN_KEY is known by
TOUCH_EVERY = timedelta(minutes=1)


@dataclass
class Bucket:
    rate_per_s: float
    burst: int
    tokens: float
    at: float

    def take(self, now: float) -> float:
        """Take one token; the seconds to wait if there is none (0: taken)."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate_per_s)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate_per_s


class Authenticator:
    def __init__(
        self,
        keys: KeyStore,
        admin_key: SecretStr | None,
        *,
        cache_s: float,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._admin_hash = token_hash(admin_key.get_secret_value()) if admin_key else None
        self._cache_s = cache_s
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey]] = {}  # token hash -> (checked at, key)
        self._buckets: dict[str, Bucket] = {}
        self._touched: dict[str, datetime] = {}
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    def of(cls, settings: ApiSettings, keys: KeyStore) -> Authenticator:
        return cls(
            keys,
            settings.admin_key,
            cache_s=settings.key_cache_s,
            rate_per_s=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst,
        )

    def forget(self, key_id: str) -> None:
        """Drop a revoked key from the cache (this replica)."""
        self._cache = {h: v for h, v in self._cache.items() if v[1].id != key_id}
        self._buckets.pop(key_id, None)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def identify(self, authorization: str | None) -> ApiKey:
        """The key behind an ``Authorization`` header, or a 401."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("missing API key: send Authorization: Bearer <key>")
        token = token.strip()
        digest = token_hash(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self._cache_s:
            key = cached[1]
        elif self._admin_hash is not None and same_hash(digest, self._admin_hash):
            key = ApiKey(
                id=ADMIN_KEY_ID,
                name="CONVEYOR_ADMIN_KEY",
                scopes=[Scope.ADMIN],
                hash=digest,
                created_at=utcnow(),
            )
        else:
            key_id = token_id(token)
            stored = await self._keys.get(key_id) if key_id else None
            if stored is None or not same_hash(digest, stored.hash):
                raise unauthorized("unknown or revoked API key")
            key = stored
        if key.expires_at is not None and key.expires_at <= utcnow():
            raise unauthorized("this API key has expired")
        if key is not (cached[1] if cached else None):
            self._cache[digest] = (now, key)
        self._touch(key)
        return key

    def check_rate(self, key: ApiKey) -> None:
        rate = key.rate_per_s if key.rate_per_s is not None else self._rate_per_s
        burst = key.burst if key.burst is not None else self._burst
        if rate <= 0:
            return  # unlimited
        now = self._clock()
        bucket = self._buckets.get(key.id)
        if bucket is None or (bucket.rate_per_s, bucket.burst) != (rate, burst):
            bucket = self._buckets[key.id] = Bucket(rate, burst, float(burst), now)
        wait_s = bucket.take(now)
        if wait_s > 0:
            reset = max(1, math.ceil((burst - bucket.tokens) / rate))
            raise ApiError(
                429,
                "rate_limited",
                f"over this key's rate limit of {rate:g} requests/s (burst {burst})",
                retry_after_s=round(wait_s, 3),
            ).with_headers(
                {
                    "Retry-After": str(max(1, math.ceil(wait_s))),
                    "RateLimit-Limit": str(burst),
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(reset),
                    "RateLimit-Policy": f"{burst};w={max(1, round(burst / rate))}",
                }
            )

    def _touch(self, key: ApiKey) -> None:
        if key.id == ADMIN_KEY_ID:
            return
        now = utcnow()
        last = self._touched.get(key.id) or key.last_used_at
        if last is not None and now - last < TOUCH_EVERY:
            return
        self._touched[key.id] = now
        task = asyncio.create_task(self._write_touch(key.id, now))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_touch(self, key_id: str, at: datetime) -> None:
        with contextlib.suppress(StoreUnavailableError):
            await self._keys.touch(key_id, at)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message).with_headers({"WWW-Authenticate": "Bearer"})


def require(scope: Scope) -> Callable[[Request], Awaitable[ApiKey]]:
    async def dependency(request: Request) -> ApiKey:
        auth: Authenticator = request.app.state.conveyor.auth
        key = await auth.identify(request.headers.get("authorization"))
        if not key.allows(scope):
            raise ApiError(
                403,
                "forbidden",
                f"this API key lacks the {scope.value!r} scope",
                required_scope=scope.value,
                key_scopes=[s.value for s in key.scopes],
            )
        auth.check_rate(key)
        request.state.api_key = key
        return key

    dependency.__name__ = f"require_{scope.name.lower()}"
    return dependency


Read = Depends(require(Scope.JOBS_READ))
Write = Depends(require(Scope.JOBS_WRITE))
Admin = Depends(require(Scope.ADMIN))
