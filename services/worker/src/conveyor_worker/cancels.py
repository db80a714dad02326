"""Which messages a worker may run from their snapshot, and which need a read.

Fresh messages carry the job (``JobEnvelope.job``); running from it saves the
read, and the finishing compare-and-set still refuses to overwrite anything
that changed meanwhile. What the snapshot cannot show is a cancel of a job that
waits, so the worker keeps the ids of recent cancel requests
(:mod:`conveyor_kernel.cancellations`): loaded at start, added from the control
fanout at once, and polled every ``poll_s`` for a signal that was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from conveyor_kernel.cancellations import Cancellations
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import JobEnvelope, utcnow

log = get_logger(__name__)

WINDOW = timedelta(hours=24)  # older messages are always read
CLOCK_MARGIN = timedelta(seconds=10)


class CancelWatch:
    def __init__(
        self, cancellations: Cancellations, *, poll_s: float = 2.0, window: timedelta = WINDOW
    ) -> None:
        self._cancellations = cancellations
        self._poll_s = poll_s
        self._window = window
        self._ids: dict[str, datetime] = {}
        self._loaded_from: datetime | None = None  # None: nothing known, read everything
        self._stale = False  # a poll failed: the set may miss requests
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the window's requests, then keep polling (subscribe to the fanout
        before calling this, so nothing falls between the two)."""
        now = utcnow()
        await self._load(now - self._window)
        self._loaded_from = now - self._window
        self._task = asyncio.create_task(self._poll(now))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def add(self, job_id: str) -> None:
        self._ids[job_id] = utcnow()

    def must_read(self, env: JobEnvelope) -> bool:
        """True unless the snapshot in ``env`` can be trusted up to a final CAS."""
        if env.job is None or self._loaded_from is None or self._stale:
            return True
        if env.job_id in self._ids:
            return True
        covered_from = max(self._loaded_from, utcnow() - self._window) + CLOCK_MARGIN
        return env.enqueued_at < covered_from

    async def _load(self, since: datetime) -> None:
        for job_id, at in await self._cancellations.since(since):
            self._ids.setdefault(job_id, at)

    async def _poll(self, last: datetime) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            now = utcnow()
            try:
                await self._load(last - CLOCK_MARGIN)
            except StoreUnavailableError as exc:
                # Unknown meanwhile: read every message until a poll succeeds (it loads
                # everything since the last good one, so nothing is missed after).
                log.warning("cancel poll failed; reading every message", error=str(exc))
                self._stale = True
                continue
            self._stale = False
            last = now
            horizon = now - self._window
            self._ids = {k: v for k, v in self._ids.items() if v >= horizon}
