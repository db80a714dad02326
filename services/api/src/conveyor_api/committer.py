"""Group commit of submissions: concurrent requests share one write and one publish round.

Requests hand their jobs to :class:`SubmitCommitter` and wait. A flush takes
everything waiting at that moment and costs three store round trips whatever
its size (outbox group insert, jobs ``insert_many``, group delete) plus one
pipelined round of confirmed publishes. There is no timer: a flush starts as
soon as a slot is free, so an idle API adds no latency, and under load the
batches grow by themselves while the previous flush is in flight.

A request is accepted once its jobs and their outbox group are stored: a
message the broker did not confirm is sent by the outbox relay later (the
commit point is the store write, as in any transactional outbox). Before that
point a request fails whole (503 or 422) and leaves nothing behind: a store
refusal or outage deletes what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from conveyor_kernel.broker import Publisher
from conveyor_kernel.errors import (
    DocumentRefusedError,
    StoreUnavailableError,
)
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import Job
from conveyor_kernel.outbox import Outbox, forget_group, publish_all
from conveyor_kernel.store import JobStore
from conveyor_kernel.tracing import Tracing

log = get_logger(__name__)


@dataclass
class _Request:
    jobs: list[Job]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SubmitCommitter:
    def __init__(
        self,
        store: JobStore,
        outbox: Outbox,
        publisher: Publisher,
        *,
        max_jobs: int = 2000,
        slots: int = 2,
        tracing: Tracing | None = None,
    ) -> None:
        self._tracing = tracing or Tracing("conveyor-api")
        self._store = store
        self._outbox = outbox
        self._publisher = publisher
        self._max_jobs = max_jobs
        self._slots = asyncio.Semaphore(slots)
        self._pending: list[_Request] = []
        self._wake = asyncio.Event()
        self._flushes: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish what was handed in, then stop."""
        while self._pending or self._flushes:
            self._wake.set()
            await asyncio.sleep(0.01)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def commit(self, jobs: list[Job]) -> None:
        """Store ``jobs`` and have the broker confirm their messages, or raise."""
        request = _Request(jobs)
        self._pending.append(request)
        self._wake.set()
        await asyncio.shield(request.done)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._slots.acquire()
                batch = self._take()
                task = asyncio.create_task(self._flush(batch))
                self._flushes.add(task)
                task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        self._slots.release()

    def _take(self) -> list[_Request]:
        batch: list[_Request] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0].jobs) <= self._max_jobs):
            request = self._pending.pop(0)
            batch.append(request)
            size += len(request.jobs)
        return batch

    async def _flush(self, batch: list[_Request]) -> None:
        """One group write. Traced as a child of the first request's enqueue span
        (its jobs carry that span's context), linked to the others' (the writes
        are shared)."""
        traces = [trace for r in batch if (trace := r.jobs[0].trace)]
        with self._tracing.span(
            "commit jobs",
            parent=traces[0] if traces else None,
            links=traces[1:],
            attributes={"conveyor.batch.requests": len(batch)},
        ):
            await self._flush_batch(batch)

    async def _flush_batch(self, batch: list[_Request]) -> None:
        try:
            await self._write_and_publish(batch)
        except Exception as exc:  # noqa: BLE001 - every waiter must hear of it
            for request in batch:
                if not request.done.done():
                    request.done.set_exception(exc)

    async def _write_and_publish(self, batch: list[_Request]) -> None:
        jobs = [job for request in batch for job in request.jobs]
        group = await self._outbox.add_jobs(jobs)
        try:
            await self._store.insert_many(jobs)
        except DocumentRefusedError:
            await self._compensate(jobs, group)
            if len(batch) == 1:
                raise
            # One request's bad document must not fail the others coalesced with it.
            for request in batch:
                await self._flush_batch([request])
            return
        except StoreUnavailableError:
            await self._compensate(jobs, group)
            raise
        # Stored with their outbox group: accepted. A message the broker did not
        # confirm may still have got through (a lost confirm) and be running from
        # its snapshot, so its job is never taken back: the relay sends the
        # unconfirmed ones once the grace period is over.
        results = await publish_all(self._publisher, jobs)
        unconfirmed = [job for job, error in zip(jobs, results, strict=True) if error]
        if unconfirmed:
            first = next(e for e in results if e is not None)
            log.warning(
                "messages not confirmed; the outbox relay will send them",
                count=len(unconfirmed),
                of=len(jobs),
                error=str(first),
            )
            await self._narrow(group, unconfirmed)
        else:
            await forget_group(self._outbox, group)
        for request in batch:
            if not request.done.done():
                request.done.set_result(None)

    async def _narrow(self, group: str, unconfirmed: list[Job]) -> None:
        """Leave only the unconfirmed jobs to the relay (a confirmed message sent
        again could run its job twice). If the store is away too, the whole group
        stays: the relay skips jobs that have moved on."""
        try:
            await self._outbox.add_jobs(unconfirmed)
        except StoreUnavailableError:
            log.warning("outbox not narrowed; the relay re-sends the whole group", group=group)
            return
        await forget_group(self._outbox, group)

    async def _compensate(self, jobs: list[Job], group: str) -> None:
        """Delete never-started jobs of failed requests; a message that did get
        through then finds no job and is skipped. If even that fails, the
        outbox group stays and the relay publishes whatever jobs exist."""
        try:
            await self._store.delete_queued(jobs)
            await self._outbox.remove(group)
        except StoreUnavailableError:
            log.exception(
                "compensation failed; the outbox relay will publish the stored jobs",
                job_ids=[j.id for j in jobs][:20],
            )
