"""``ctx.progress`` of a running attempt: throttled writes and live events.

At most one store write per attempt per ``interval_s`` (1 s); the value is set
on the job with the ``rev`` of its recorded ``running`` state, so it never
bumps the revision the attempt's finishing write compares against. A report
made before the attempt is on record waits for that write. The last value is
always kept: the finishing write carries it (:meth:`ProgressReporter.close`).
A job that never reports costs nothing but this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.live import PROGRESS, LiveEvent, LiveFeed, Progress
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import Job, JobProgress, JobStatus, utcnow
from conveyor_kernel.store import JobStore
from conveyor_worker.metrics import WorkerMetrics
from conveyor_worker.running import RunningRecorder

log = get_logger(__name__)


class ProgressReporter:
    def __init__(
        self,
        store: JobStore,
        live: LiveFeed,
        recorder: RunningRecorder,
        job: Job,
        attempt: int,
        *,
        metrics: WorkerMetrics | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._live = live
        self._recorder = recorder
        self._job = job
        self._attempt = attempt
        self._interval_s = interval_s
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._last_write = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self.latest: JobProgress | None = None
        self.writes = 0

    def report(self, fraction: float, message: str | None) -> None:
        """``JobContext.progress_sink``: from the loop or a handler's thread."""
        if threading.get_ident() == self._thread:
            self._set(fraction, message)
        else:
            self._loop.call_soon_threadsafe(self._set, fraction, message)

    def _set(self, fraction: float, message: str | None) -> None:
        self.latest = JobProgress(fraction=fraction, message=message, at=utcnow())
        if self._metrics is not None:
            self._metrics.progress_reports.labels(self._job.type).inc()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_soon())

    async def _write_soon(self) -> None:
        await asyncio.sleep(max(0.0, self._last_write + self._interval_s - time.monotonic()))
        recorded = await self._recorder.written()
        progress = self.latest
        if recorded is None or progress is None:
            return  # the finishing write carries it
        self._last_write = time.monotonic()
        try:
            if not await self._store.set_progress(self._job.id, recorded.rev, progress):
                return  # someone else wrote the job (a cancel): no more progress
        except StoreUnavailableError as exc:
            log.warning("progress not recorded", error=str(exc))
            return
        self.writes += 1
        if self._metrics is not None:
            self._metrics.progress_writes.labels(self._job.type).inc()
        self._live.emit(
            LiveEvent(
                kind=PROGRESS,
                job_id=self._job.id,
                job_type=self._job.type,
                status=JobStatus.RUNNING,
                attempt=self._attempt,
                at=progress.at,
                progress=Progress(fraction=progress.fraction, message=progress.message),
            )
        )

    async def close(self) -> JobProgress | None:
        """Stop writing; the last reported value (for the finishing write)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.latest
