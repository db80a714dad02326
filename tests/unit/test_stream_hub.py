"""The event stream's fan-out without a broker: replay, resync and dropping slow
clients (the broker side is tested in tests/integration/test_stream.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from conveyor_api.stream import Filters, StreamHub
from conveyor_kernel.live import LiveEvent, LiveFeed, watching_announcement
from conveyor_kernel.model import JobStatus, utcnow
from conveyor_kernel.topology import build_topology, live_exchange_name

TOPOLOGY = build_topology("unit")


@dataclass
class FakeMessage:
    body: bytes
    exchange: str = live_exchange_name("unit")


def hub(**kw: Any) -> StreamHub:
    async def announce() -> None:
        raise AssertionError("a bound hub announces once, when it binds")

    h = StreamHub(
        object(),  # type: ignore[arg-type]  # no broker in unit tests
        TOPOLOGY,
        announce,
        buffer_size=kw.get("buffer_size", 100),
        client_queue=kw.get("client_queue", 10),
        linger_s=60,
        on_drop=kw.get("on_drop", lambda: None),
    )
    h._queue = object()  # type: ignore[assignment]  # pretend bound
    h._bound_at = 0
    return h


async def push(h: StreamHub, job_id: str, kind: str = "job.started") -> None:
    event = LiveEvent(
        kind=kind, job_id=job_id, job_type="echo", status=JobStatus.RUNNING, attempt=1, at=utcnow()
    )
    body = b"[" + event.model_dump_json().encode() + b"]"  # live events come in batches
    await h._on_message(FakeMessage(body))  # type: ignore[arg-type]


async def test_replay_after_last_event_id_with_filters() -> None:
    h = hub()
    for i in range(5):
        await push(h, f"j{i % 2}")
    sub = await h.subscribe(Filters(job_id="j0"), h.event_id(1))
    assert sub.resync is None
    assert [(n.seq, n.event.job_id) for n in sub.replay] == [(3, "j0"), (5, "j0")]


async def test_unknown_or_gapped_ids_ask_for_resync() -> None:
    h = hub(buffer_size=3)
    for i in range(6):
        await push(h, f"j{i}")
    assert (await h.subscribe(Filters(), "other-1")).resync is not None
    assert "replay buffer" in str((await h.subscribe(Filters(), h.event_id(1))).resync)
    assert (await h.subscribe(Filters(), h.event_id(3))).resync is None  # 4..6 kept
    before_gap = h.event_id(6)
    h._gap("the broker connection was restored")
    await push(h, "j7")
    sub = await h.subscribe(Filters(), before_gap)
    assert "not watched" in str(sub.resync)


async def test_a_slow_client_is_dropped_not_buffered() -> None:
    dropped: list[int] = []
    h = hub(client_queue=3, on_drop=lambda: dropped.append(1))
    slow = await h.subscribe(Filters(), None)
    fast = await h.subscribe(Filters(job_id="j1"), None)
    for _ in range(5):
        await push(h, "j0")
    assert slow.dropped
    assert dropped == [1]
    assert slow.queue.qsize() == 1
    assert slow.queue.get_nowait() is None  # wakes the client to send "dropped"
    assert not fast.dropped
    await push(h, "j1")
    item = fast.queue.get_nowait()
    assert item is not None
    assert item.event.job_id == "j1"
    h.unsubscribe(slow)
    h.unsubscribe(fast)
    assert not h.subscribers
    await asyncio.sleep(0)


def test_live_events_are_sent_only_while_someone_watches() -> None:
    feed = LiveFeed(object(), TOPOLOGY)  # type: ignore[arg-type]
    assert not feed.watched
    assert not feed.on_control({"action": "cancel", "job_id": "x"})
    assert feed.on_control(watching_announcement())
    assert feed.watched
    feed.on_control({"action": "watching", "for_s": "soon"})  # malformed: logged, ignored
    assert feed.watched
