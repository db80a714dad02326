"""Writing ``running`` only for attempts that last.

A no-op job would otherwise pay a second write. :class:`RunningRecorder`
writes the job's ``running`` state after a delay; when the handler finishes
first, nothing was written and the finishing write records the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib

from conveyor_kernel.errors import ContentionError, StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import Job
from conveyor_kernel.store import JobStore

log = get_logger(__name__)


class RunningRecorder:
    def __init__(self, store: JobStore, running: Job, after_s: float) -> None:
        self._store = store
        self._running = running
        self._after_s = after_s
        self._writing = False
        self._task = asyncio.create_task(self._write())

    async def _write(self) -> Job | None:
        if self._after_s > 0:
            await asyncio.sleep(self._after_s)
        self._writing = True
        return await self._store.compare_and_set(self._running)

    async def written(self) -> Job | None:
        """The ``running`` state once it is on record (waits for the write if it is
        due); ``None`` if it never will be (lost, failed, or the attempt ended first)."""
        try:
            return await asyncio.shield(self._task)
        except (StoreUnavailableError, asyncio.CancelledError):
            if self._task.cancelled():
                return None
            raise

    async def wait_written(self) -> None:
        """For a redelivered message: the attempt must be on record before it runs."""
        if await self._task is None:
            raise ContentionError("job changed while recording the attempt")

    async def settle(self) -> Job | None:
        """The job as last written: the ``running`` write if it happened (``None``
        if it lost or its result is unknown), else the unwritten ``running`` state,
        whose ``rev`` is still the stored one."""
        if not self._writing:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            if not self._writing:
                return self._running
        try:
            return await self._task
        except StoreUnavailableError as exc:
            log.warning("running state not recorded", error=str(exc))
            return None
