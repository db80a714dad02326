"""Is the attempt a redelivered message carries still running somewhere?

RabbitMQ takes a message back when the channel it was delivered on closes, for
instance when its consumer timeout expires under a long job, although the
worker is alive and still running it. Marking that attempt ``lost`` and running
the job again would run it twice. So every worker process holds an exclusive
*liveness queue* (its control queue, named after its session), records its
session on each attempt, and a worker handed such a message asks first:

- an attempt of this process: is it still in flight here?
- another process's: does its liveness queue still exist (a passive declare
  answers ``RESOURCE_LOCKED`` while the owner's connection is open, ``NOT_FOUND``
  once it is gone)?

While the holder lives, the message becomes a ``watch`` copy that comes back
every ``recheck_s`` and runs the job only if the holder died without finishing.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from conveyor_kernel.broker import Publisher
from conveyor_kernel.model import Attempt, JobEnvelope, utcnow
from conveyor_kernel.topology import liveness_queue_name


def new_session(worker_id: str) -> str:
    """A name for this process's broker session (unique even if the id repeats,
    as a restarted container's hostname and pid do)."""
    return f"{worker_id}.{secrets.token_hex(4)}"


class Liveness:
    def __init__(
        self, publisher: Publisher, namespace: str, session: str, recheck_s: float
    ) -> None:
        self._publisher = publisher
        self._namespace = namespace
        self.session = session
        self._recheck_s = recheck_s
        self._active: set[tuple[str, int]] = set()

    @property
    def queue(self) -> str:
        return liveness_queue_name(self._namespace, self.session)

    def started(self, job_id: str, attempt: int) -> None:
        self._active.add((job_id, attempt))

    def ended(self, job_id: str, attempt: int) -> None:
        self._active.discard((job_id, attempt))

    async def alive(self, job_id: str, attempt: Attempt) -> bool:
        """Whether ``attempt`` of ``job_id`` may still be running in its worker."""
        if attempt.session is None:
            return False  # recorded before sessions existed: treat as lost
        if attempt.session == self.session:
            return (job_id, attempt.number) in self._active
        return await self._publisher.queue_held(
            liveness_queue_name(self._namespace, attempt.session)
        )

    def watch_copy(self, env: JobEnvelope) -> JobEnvelope:
        """The message to publish instead: checks again after ``recheck_s``."""
        return env.model_copy(
            update={
                "watch": True,
                "job": None,
                "not_before": utcnow() + timedelta(seconds=self._recheck_s),
            }
        )
