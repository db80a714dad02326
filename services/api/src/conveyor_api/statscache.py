"""Job counts for ``/v1/stats``: read from the maintained counts
(:mod:`conveyor_kernel.counts`), never by counting the stored jobs.

A read is one query over a small collection plus this API's own pending
changes, so it costs the same with ten jobs stored or ten million. A read that
fails or takes longer than ``timeout_s`` is answered with the last counts
obtained, their age (``counts_age_s``), ``counts_stale: true`` and the error;
only when no read ever succeeded is it an error (503).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from conveyor_kernel.counts import JobCounts, Stats, Tally
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.model import utcnow


@dataclass(frozen=True)
class Counts:
    stats: Stats
    counted_at: datetime
    age_s: float
    stale: bool
    error: str | None  # why the last read failed, if it did


class StatsCache:
    def __init__(
        self,
        counts: JobCounts,
        own: Tally,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counts = counts
        self._own = own
        self._timeout_s = timeout_s
        self._clock = clock
        self._last: tuple[Stats, datetime, float] | None = None  # stats, when, clock()

    async def latest(self) -> Stats | None:
        """The counts if obtainable (for choosing how to list), else ``None``."""
        try:
            return (await self.get()).stats
        except StoreUnavailableError:
            return None

    async def get(self) -> Counts:
        """The counts now, or the last ones obtained if the store does not answer."""
        try:
            stats = await self._counts.read(self._own, self._timeout_s)
        except StoreUnavailableError as exc:
            if self._last is None:
                raise StoreUnavailableError(f"job counts are not available: {exc}") from exc
            stats, at, taken = self._last
            return Counts(stats, at, max(0.0, self._clock() - taken), stale=True, error=str(exc))
        self._last = (stats, utcnow(), self._clock())
        return Counts(stats, self._last[1], 0.0, stale=False, error=None)
