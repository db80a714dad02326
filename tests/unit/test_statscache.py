"""/v1/stats' job counts: served from memory, one recount at a time, bounded waits.

The store is a stand-in whose count blocks until the test releases it, so the
slow-count paths are exercised deterministically; the route itself runs against
real servers in tests/integration/test_api.py.
"""

from __future__ import annotations

import asyncio

import pytest

from conveyor_api.statscache import StatsCache
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.store import JobStore, Stats


class GatedStore:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0
        self.total = 0
        self.fail: str | None = None

    async def stats(self, timeout_s: float) -> Stats:
        self.calls += 1
        total = self.total  # the state when the count starts
        await self.gate.wait()
        if self.fail:
            raise StoreUnavailableError(self.fail)
        return Stats(by_status={"queued": total}, by_type={"echo": total}, total=total)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(store: GatedStore, clock: Clock, max_age_s: float = 5.0) -> StatsCache:
    return StatsCache(store, max_age_s, 0.05, clock=clock)  # type: ignore[arg-type]


async def test_no_count_yet_is_store_unavailable_then_the_count_is_served() -> None:
    store, clock = GatedStore(), Clock()
    cache = make(store, clock)
    with pytest.raises(StoreUnavailableError, match=r"still running after 0\.05 s"):
        await cache.get()
    store.total = 7
    store.gate.set()
    counts = await cache.get()  # the first count (started with total 0) finished
    assert counts.stats.total == 0
    assert store.calls == 1
    assert not counts.stale
    await cache.close()


async def test_stale_counts_are_served_while_one_recount_runs() -> None:
    store, clock = GatedStore(), Clock()
    cache = make(store, clock)
    store.gate.set()
    assert (await cache.get()).stats.total == 0
    store.gate.clear()
    store.total = 3
    clock.now += 6  # past max_age
    answers = await asyncio.gather(*(cache.get() for _ in range(5)))
    assert store.calls == 2  # five requests, one recount
    assert all(a.stale and a.stats.total == 0 for a in answers)
    assert answers[0].age_s == pytest.approx(6)
    store.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    fresh = await cache.get()
    assert fresh.stats.total == 3
    assert not fresh.stale
    assert store.calls == 2
    await cache.close()


async def test_slow_recounts_are_spaced_by_five_times_their_duration() -> None:
    store, clock = GatedStore(), Clock()
    cache = make(store, clock, max_age_s=1)
    cache.start()
    await asyncio.sleep(0)
    clock.now += 4  # the first count takes 4 s
    store.gate.set()
    await cache.get()
    assert store.calls == 1
    clock.now += 10  # stale, but a new count may start only 20 s after the last began
    assert (await cache.get()).stale
    assert store.calls == 1
    clock.now += 11
    assert (await cache.get()).stale  # a recount that took 4 s is not waited for
    await asyncio.sleep(0)
    assert store.calls == 2
    await cache.close()


async def test_a_failed_recount_keeps_the_last_counts_and_says_why() -> None:
    store, clock = GatedStore(), Clock()
    cache = make(store, clock)
    store.gate.set()
    await cache.get()
    store.fail = "MongoDB: ServerSelectionTimeoutError"
    clock.now += 6
    counts = await cache.get()
    assert counts.stale
    assert counts.error == "MongoDB: ServerSelectionTimeoutError"
    assert counts.stats.total == 0
    await cache.close()


async def test_max_age_zero_counts_for_every_request() -> None:
    store, clock = GatedStore(), Clock()
    store.gate.set()
    cache = make(store, clock, max_age_s=0)
    for total in (1, 2, 3):
        store.total = total
        assert (await cache.get()).stats.total == total
    assert store.calls == 3
    await cache.close()


def test_the_stand_in_matches_the_store_signature() -> None:
    assert GatedStore.stats.__code__.co_varnames[:2] == JobStore.stats.__code__.co_varnames[:2]
