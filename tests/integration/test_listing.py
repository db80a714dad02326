"""Job lists through the time index (conveyor_kernel.listing) against the real
store: newest first over sparse time, every filter, short pages when the walk
runs out of time, and nothing missed or repeated across pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor_kernel import listing
from conveyor_kernel.counts import Stats
from conveyor_kernel.model import DeadLetter, Job, JobStatus, JobSubmission, utcnow
from conveyor_kernel.store import JobStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T0 = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
# Jobs spread over days, hours and seconds, with long empty stretches between.
OFFSETS = [timedelta(days=d, hours=h, seconds=s) for d in (0, 2) for h in (0, 5) for s in (0, 1)]


def _job(at: datetime, type_: str = "echo", **update: object) -> Job:
    job = Job.from_submission(JobSubmission(type=type_), default_timeout_s=30)
    return job.model_copy(update={"created_at": at, "updated_at": at, **update})


async def _all_pages(store: JobStore, limit: int, **filters: object) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(200):
        page = await store.list(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        ids.extend(j.id for j in page.jobs)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor
    raise AssertionError("the pages never ended")


@pytest.fixture
async def stored(store: JobStore) -> dict[str, list[Job]]:
    await store.index.ensure_indexes()
    echo = [_job(T0 + off) for off in OFFSETS]
    reports = [_job(T0 + off + timedelta(milliseconds=500), "report-gen") for off in OFFSETS]
    dead = _job(
        T0 + timedelta(days=1),
        "fail",
        status=JobStatus.FAILED,
        dead_letter=DeadLetter(reason="permanent error", at=utcnow()),
    )
    same_ms = [_job(T0 + timedelta(days=3)) for _ in range(3)]  # ties broken by id
    await store.insert_many([*echo, *reports, dead, *same_ms])
    done = []
    for job in reports[:3]:  # completed by a transition, as a worker would
        written = await store.compare_and_set(
            job.model_copy(update={"status": JobStatus.COMPLETED})
        )
        assert written is not None
        done.append(written)
    return {"echo": echo + same_ms, "reports": reports, "done": done, "dead": [dead]}


def _newest_first(jobs: list[Job]) -> list[str]:
    return [j.id for j in sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)]


async def test_pages_are_newest_first_over_sparse_time_under_every_filter(
    store: JobStore, stored: dict[str, list[Job]]
) -> None:
    everything = stored["echo"] + stored["reports"] + stored["dead"]
    assert await _all_pages(store, 3) == _newest_first(everything)
    assert await _all_pages(store, 50, job_type="report-gen") == _newest_first(stored["reports"])
    assert await _all_pages(store, 2, status=JobStatus.COMPLETED) == _newest_first(stored["done"])
    assert await _all_pages(store, 2, dead_lettered=True) == _newest_first(stored["dead"])
    both = {"status": JobStatus.COMPLETED, "job_type": "echo"}
    assert await _all_pages(store, 5, **both) == []
    queued = stored["echo"] + stored["reports"][3:]
    # A waiting status: read whole when the counts say it is small, walked when unknown.
    few = Stats(by_status={"queued": len(queued)}, by_type={}, total=len(queued))

    async def counts() -> Stats:
        return few

    expected = _newest_first(queued)
    assert await _all_pages(store, 4, status=JobStatus.QUEUED, counts=counts) == expected
    assert await _all_pages(store, 4, status=JobStatus.QUEUED) == expected
    assert await _all_pages(store, 4, schedule_id="nope") == []


async def test_a_walk_out_of_time_gives_short_pages_that_lose_nothing(
    store: JobStore, stored: dict[str, list[Job]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor_kernel.store.WALK_BUDGET_S", 0.0)  # one bucket a page
    everything = stored["echo"] + stored["reports"] + stored["dead"]
    page = await store.list(limit=50)
    assert 0 < len(page.jobs) < 50
    assert page.next_cursor is not None
    assert await _all_pages(store, 50) == _newest_first(everything)


def test_the_dimension_follows_the_most_selective_filter() -> None:
    counts = Stats(
        by_status={"completed": 900, "queued": 5000, "running": 10},
        by_type={"echo": 950, "rare": 3},
        total=1000,
    )
    pick = listing.dimension_for
    assert pick(None, None, None, False, counts) == "all"
    assert pick(JobStatus.COMPLETED, "rare", None, False, counts) == "type=rare"
    assert pick(JobStatus.COMPLETED, "echo", None, False, counts) == "status=completed"
    assert pick(JobStatus.RUNNING, None, None, False, counts) is None  # 10: read whole
    assert pick(JobStatus.QUEUED, None, None, False, counts) == "all"  # a backlog
    assert pick(JobStatus.QUEUED, "rare", None, False, counts) == "type=rare"
    assert pick(None, None, "s1", False, counts) == "schedule=s1"
    assert pick(None, None, None, True, None) == "dead"
    assert pick(JobStatus.RUNNING, None, None, False, None) == "all"  # no counts: walk
    # The counts are read only where the choice depends on them.
    needs = listing.needs_counts
    assert needs(JobStatus.RUNNING, None, None, False)
    assert needs(None, "echo", None, False)
    assert not needs(None, None, None, False)
    assert not needs(JobStatus.COMPLETED, "echo", "s1", False)
    assert not needs(None, None, None, True)


async def test_noting_entries_written_before_is_harmless(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "REMEMBERED", 2)  # forgets at once
    jobs = [_job(T0 + timedelta(seconds=s)) for s in range(5)]
    await store.insert_many(jobs)  # notes 3 levels x 2 dimensions x 5 seconds
    await store.index.note(jobs)  # forgotten, written again: duplicates, ignored
    other = listing.JobIndex(store._client, store._jobs.database.name)  # another process
    await other.note(jobs)
    assert await _all_pages(store, 2) == _newest_first(jobs)
