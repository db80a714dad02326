"""Job counts for ``/v1/stats``: computed in the background, served from memory.

Counting reads every stored job, which takes seconds once there are tens of
thousands (FerretDB v1: ~0.3 ms a job, more under load). So a request never
waits for a full count longer than ``stats_timeout_s`` (and not at all once a
recount has taken longer than that): it gets the last counts with their age
(``counts_age_s``) and ``counts_stale: true``, while one recount (single-flight,
shared by all requests) carries on. Counts younger than
``stats_max_age_s`` are served as they are. A recount starts at most once per
``max(stats_max_age_s, 5 x the last recount's duration)``, so a dashboard polling
a big collection costs the store at most ~20 % of its time.

``stats_max_age_s = 0`` turns the cache off: every request counts afresh (still
within ``stats_timeout_s``); for small stores and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import utcnow
from conveyor_kernel.store import JobStore, Stats

log = get_logger(__name__)

DUTY_FACTOR = 5.0  # a recount's duration x this = the least time until the next one
COMPUTE_TIMEOUT_S = 300.0  # one recount's store budget


@dataclass(frozen=True)
class Counts:
    stats: Stats
    counted_at: datetime
    age_s: float
    stale: bool
    error: str | None  # why the last recount failed, if it did


class StatsCache:
    def __init__(
        self,
        store: JobStore,
        max_age_s: float,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._stats: Stats | None = None
        self._counted_at: datetime | None = None
        self._at = 0.0  # clock() when the counts were taken
        self._last_start = float("-inf")
        self._last_duration_s = 0.0
        self._error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Count once in the background (warm-up at startup)."""
        self._refresh()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def get(self) -> Counts:
        """The freshest counts obtainable within ``timeout_s``.

        Raises :class:`StoreUnavailableError` only when no count ever succeeded.
        """
        asked = self._clock()
        if self._stats is None or self._max_age_s == 0 or asked - self._at > self._max_age_s:
            task = self._refresh()
            # Wait for it only while it may still finish in time: the last one did
            # (or there is none yet) and this one has not run past the timeout.
            if task is not None and (
                self._stats is None
                or (
                    self._last_duration_s < self._timeout_s
                    and self._clock() - self._last_start < self._timeout_s
                )
            ):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), self._timeout_s)
        if self._stats is None or self._counted_at is None:
            raise StoreUnavailableError(
                "job counts are not available yet: "
                + (self._error or f"the first count is still running after {self._timeout_s:g} s")
            )
        age_s = max(0.0, self._clock() - self._at)
        return Counts(
            stats=self._stats,
            counted_at=self._counted_at,
            age_s=age_s,
            stale=asked - self._at > self._max_age_s,  # older than allowed when asked
            error=self._error,
        )

    def _refresh(self) -> asyncio.Task[None] | None:
        """The running recount, or a new one if it is time; ``None`` if it is not."""
        if self._max_age_s == 0:
            return self._spawn()  # no cache: a count of its own for every request
        if self._task is not None and not self._task.done():
            return self._task
        spacing_s = max(self._max_age_s, DUTY_FACTOR * self._last_duration_s)
        if self._stats is not None and self._clock() - self._last_start < spacing_s:
            return None
        self._task = self._spawn()
        return self._task

    def _spawn(self) -> asyncio.Task[None]:
        self._last_start = self._clock()
        task = asyncio.create_task(self._count(), name="stats-recount")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _count(self) -> None:
        started = self._clock()
        counted_at = utcnow()
        try:
            stats = await self._store.stats(COMPUTE_TIMEOUT_S)
        except StoreUnavailableError as exc:
            self._error = str(exc)
            log.warning("job count failed; serving the last one", error=str(exc))
            return
        finally:
            self._last_duration_s = self._clock() - started
        if started >= self._at:  # with the cache off, counts may finish out of order
            self._stats, self._counted_at, self._at = stats, counted_at, started
        self._error = None
        if self._last_duration_s > 1:
            log.info("jobs counted", total=stats.total, seconds=round(self._last_duration_s, 2))
