"""The one routine that applies a transition: stage, write, publish, clean up.

:func:`conveyor_kernel.machine` decides; :class:`Committer` does the I/O in one
order for every caller:

1. with ``durable=True`` (a writer that holds no broker message, i.e. the API):
   stage the event in the event outbox and the next message in the outbox;
2. write the new state with a compare-and-set (``None`` if another writer won);
3. publish the next message (retry, redrive), the parking-lot copy and the
   event, each confirmed;
4. drop what step 1 staged.

A worker passes ``durable=False``: the message it holds is its outbox. If a
publish fails it gets :class:`BrokerUnavailableError`, requeues the message,
and the redelivered message re-sends the stored transition's effects
(:class:`conveyor_kernel.machine.Repair`). That saves two store round trips per
finished attempt.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor_kernel.broker import Publisher
from conveyor_kernel.errors import BrokerUnavailableError, StoreUnavailableError
from conveyor_kernel.events import Events, JobEvent, job_event
from conveyor_kernel.logs import get_logger
from conveyor_kernel.machine import Transition
from conveyor_kernel.model import Job
from conveyor_kernel.outbox import Outbox, forget_group
from conveyor_kernel.store import JobStore

log = get_logger(__name__)


@dataclass(frozen=True)
class Written:
    """A stored transition whose effects are not sent yet."""

    committer: Committer
    transition: Transition
    event: JobEvent | None
    durable: bool
    group: str | None

    @property
    def job(self) -> Job:
        return self.transition.job

    async def send(self) -> None:
        """Step 3 and 4. A durable writer only logs a failure (the relays retry); a
        worker gets the error and requeues its message."""
        try:
            await self.committer.send(self.transition, self.event, staged=self.durable)
        except (BrokerUnavailableError, StoreUnavailableError) as exc:
            if not self.durable:
                raise
            log.warning("effects not sent now; the relay will", job_id=self.job.id, error=str(exc))
            return
        if self.group is not None:
            await forget_group(self.committer.outbox, self.group)


class Committer:
    def __init__(
        self, store: JobStore, events: Events, publisher: Publisher, outbox: Outbox
    ) -> None:
        self._store = store
        self._events = events
        self._publisher = publisher
        self.outbox = outbox

    async def apply(self, transition: Transition, *, durable: bool) -> Job | None:
        """Write ``transition`` and send its effects; ``None`` if the CAS lost."""
        written = await self.write(transition, durable=durable)
        if written is None:
            return None
        await written.send()
        return written.job

    async def write(self, transition: Transition, *, durable: bool) -> Written | None:
        """Steps 1 and 2: the caller sends the effects (``Written.send``) when it
        chooses, e.g. after a whole batch of writes."""
        job, event = self._events.with_event(transition.job)
        group = None
        if durable:
            if event is not None:
                await self._events.stage_event(job.id, event)
            if transition.publish:
                group = await self.outbox.add(job.id, job.next_attempt)
        stored = await self._store.compare_and_set(job)
        if stored is None:
            if group is not None:
                await forget_group(self.outbox, group)
            return None
        stored_transition = Transition(stored, publish=transition.publish, park=transition.park)
        return Written(self, stored_transition, event, durable, group)

    async def send(self, transition: Transition, event: JobEvent | None, *, staged: bool) -> None:
        """Publish a stored transition's effects: next message, parked copy, event."""
        job = transition.job
        if transition.publish:
            await self._publisher.publish_job(job.envelope(), job.trace)
        if transition.park:
            await self._park(job)
        if event is not None:
            await self._events.publish(event, staged=staged)

    async def repair(self, transition: Transition) -> None:
        """Re-send the effects of a transition stored earlier (a redelivered message)."""
        event = job_event(transition.job, self._events.public_url)
        if event is not None and (
            not self._events.enabled or event.id not in transition.job.emitted
        ):
            event = None
        await self.send(transition, event, staged=False)

    async def _park(self, job: Job) -> None:
        """The final dead letter: a copy in the parking lot, the reason in its headers."""
        reason = job.dead_letter.reason if job.dead_letter else "failed"
        headers = {
            "x-conveyor-job-id": job.id,
            "x-conveyor-type": job.type,
            "x-conveyor-attempts": len(job.attempts),
            "x-conveyor-error": (job.error or "")[:1000],
        }
        await self._publisher.park(job.envelope().model_dump_json().encode(), reason, headers)
        log.info("job parked", job_id=job.id, reason=reason)
