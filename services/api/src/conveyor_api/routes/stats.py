"""``/v1/stats``: job counts from MongoDB, queue depth and consumers from RabbitMQ."""

from __future__ import annotations

from fastapi import APIRouter

from conveyor_api.schemas import QueueOut, StatsOut
from conveyor_api.state import State
from conveyor_kernel.broker import BROKER_ERRORS, queue_stats
from conveyor_kernel.model import JobStatus

router = APIRouter(prefix="/v1", tags=["stats"])


@router.get("/stats")
async def stats(state: State) -> StatsOut:
    counts = await state.store.stats()
    by_status = {s.value: 0 for s in JobStatus} | counts.by_status
    queues: dict[str, QueueOut] | None = None
    broker_error = None
    try:
        channel = await state.connection.channel()
        try:
            queues = {}
            for key, name in (
                ("work", state.topology.work_queue),
                ("parking_lot", state.topology.parking_lot_queue),
            ):
                q = await queue_stats(channel, name)
                queues[key] = QueueOut(name=q.name, messages=q.messages, consumers=q.consumers)
        finally:
            await channel.close()
    except BROKER_ERRORS as exc:
        queues, broker_error = None, f"{type(exc).__name__}: {exc}"
    return StatsOut(
        total=counts.total,
        by_status=by_status,
        by_type=counts.by_type,
        queues=queues,
        broker_error=broker_error,
    )
