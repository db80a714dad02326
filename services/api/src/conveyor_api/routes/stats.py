"""``/v1/stats``: job counts (cached, with their age) and the queues' depth and consumers.

Bounded: the counts come from :class:`conveyor_api.statscache.StatsCache` and the
queue figures from the broker within ``stats_timeout_s``, so the answer stays
fast however many jobs are stored or however busy the store is.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from conveyor_api.auth import Read
from conveyor_api.schemas import QueueOut, StatsOut
from conveyor_api.state import AppState, State
from conveyor_kernel.broker import BROKER_ERRORS, queue_stats
from conveyor_kernel.model import JobStatus

router = APIRouter(prefix="/v1", tags=["stats"])


async def read_queues(state: AppState) -> dict[str, QueueOut]:
    channel = await state.connection.channel()
    try:
        queues = {}
        for key, name in (
            ("work", state.topology.work_queue),
            ("parking_lot", state.topology.parking_lot_queue),
        ):
            q = await queue_stats(channel, name)
            queues[key] = QueueOut(name=q.name, messages=q.messages, consumers=q.consumers)
        return queues
    finally:
        await channel.close()


@router.get(
    "/stats",
    responses={503: {"description": "No job count has succeeded yet (store unavailable)"}},
    dependencies=[Read],
)
async def stats(state: State) -> StatsOut:
    """Jobs by status and type, with the counts' age, and the work and parking-lot queues.

    ``queues`` is ``null`` with ``broker_error`` when the broker does not answer in time.
    """
    counts = await state.stats.get()
    queues: dict[str, QueueOut] | None = None
    broker_error = None
    try:
        async with asyncio.timeout(state.settings.stats_timeout_s):
            queues = await read_queues(state)
    except TimeoutError:
        broker_error = f"no answer from the broker within {state.settings.stats_timeout_s:g} s"
    except BROKER_ERRORS as exc:
        broker_error = f"{type(exc).__name__}: {exc}"
    return StatsOut(
        total=counts.stats.total,
        by_status={s.value: 0 for s in JobStatus} | counts.stats.by_status,
        by_type=counts.stats.by_type,
        counted_at=counts.counted_at,
        counts_age_s=round(counts.age_s, 3),
        counts_stale=counts.stale,
        counts_error=counts.error,
        queues=queues,
        broker_error=broker_error,
    )
