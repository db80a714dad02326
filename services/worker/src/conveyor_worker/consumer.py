"""The message callback: parse, decide, run, record, then ack.

The ack happens only after the outcome is durable in MongoDB. Store or
broker trouble requeues the message (nothing is lost); a message that is not a
valid envelope is rejected without requeue, which dead-letters it to the
parking lot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random

import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from conveyor_kernel.broker import Publisher, settle
from conveyor_kernel.errors import BrokerUnavailableError, StoreUnavailableError
from conveyor_kernel.events import Events
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import AttemptOutcome, Job, JobEnvelope, JobStatus, utcnow
from conveyor_kernel.outbox import Outbox, dispatch
from conveyor_kernel.registry import HandlerRegistry, JobContext, UnknownJobTypeError
from conveyor_kernel.store import JobStore
from conveyor_kernel.topology import delay_tier
from conveyor_worker.executor import execute
from conveyor_worker.metrics import WorkerMetrics
from conveyor_worker.transitions import ContentionError, Outcome, Run, begin, finish

log = get_logger(__name__)
_jitter = random.SystemRandom()  # backoff jitter, not crypto

STORE_BACKOFF_S = 1.0


class JobConsumer:
    def __init__(
        self,
        store: JobStore,
        outbox: Outbox,
        events: Events,
        publisher: Publisher,
        registry: HandlerRegistry,
        *,
        worker_id: str,
        metrics: WorkerMetrics,
    ) -> None:
        self._metrics = metrics
        metrics.in_flight.set_function(lambda: len(self._running))
        self._store = store
        self._outbox = outbox
        self._events = events
        self._publisher = publisher
        self._registry = registry
        self._worker_id = worker_id
        self._running: dict[asyncio.Task[None], JobContext | None] = {}
        self._cancelled: set[str] = set()
        self.accepting = True

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """aio-pika consumer callback: hand the message to its own task."""
        task = asyncio.create_task(self._handle(message))
        self._running[task] = None
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        ctx = self._running.pop(task, None)
        if ctx is not None:
            self._cancelled.discard(ctx.job_id)

    async def on_control(self, message: AbstractIncomingMessage) -> None:
        """Control fanout (no ack needed): ``{"action": "cancel", "job_id": ...}``."""
        try:
            body = json.loads(message.body)
            action, job_id = body["action"], str(body["job_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed control message", body=message.body[:200])
            return
        if action != "cancel":
            return
        for task, ctx in self._running.items():
            if ctx is not None and ctx.job_id == job_id:
                log.info("cancelling running job", job_id=job_id)
                self._cancelled.add(job_id)
                ctx.stop_requested.set()
                task.cancel()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        structlog.contextvars.bind_contextvars(worker=self._worker_id)
        try:
            env = JobEnvelope.model_validate_json(message.body)
        except ValidationError as exc:
            reason = "poison: not a valid job envelope: " + str(exc).replace("\n", "; ")
            log.warning("poison message; parking it", message_id=message.message_id, error=reason)
            self._metrics.poison.inc()
            try:
                await self._publisher.park(
                    message.body,
                    reason[:1000],
                    {"x-conveyor-original-message-id": message.message_id or ""},
                )
            except BrokerUnavailableError:
                await settle(message.reject(requeue=False))  # DLX parks it, sans reason
            else:
                await settle(message.ack())
            return
        structlog.contextvars.bind_contextvars(
            job_id=env.job_id, type=env.type, attempt=env.attempt
        )
        try:
            await self._process(message, env)
        except (StoreUnavailableError, ContentionError, BrokerUnavailableError) as exc:
            log.warning("store or broker trouble; requeueing the message", error=str(exc))
            await asyncio.sleep(STORE_BACKOFF_S)
            await settle(message.nack(requeue=True))

    async def _process(self, message: AbstractIncomingMessage, env: JobEnvelope) -> None:
        if env.not_before is not None:
            wait_s = (env.not_before - utcnow()).total_seconds()
            if delay_tier(wait_s) is not None:
                # Back early from a delay tier: go round again for the rest (no DB write).
                await self._publisher.publish_job(env)
                await settle(message.ack())
                return
            if wait_s > 0:
                await asyncio.sleep(wait_s)  # under the smallest tier (< 1 s)
        decision = await begin(
            self._store, self._events, env, self._worker_id, redelivered=bool(message.redelivered)
        )
        if not isinstance(decision, Run):
            log.info("skipping message", reason=decision.reason)
            self._metrics.skipped.inc()
            if decision.parked is not None:
                await self._park(message, decision.parked)
            await settle(message.ack())
            return
        job = decision.job
        budget_after = job.budget_used + 1
        ctx = JobContext(
            job_id=job.id,
            type=job.type,
            payload=job.payload,
            attempt=decision.attempt.number,
            max_retries=job.max_retries,
            is_last_attempt=budget_after > job.max_retries,
        )
        task = asyncio.current_task()
        self._running[task] = ctx  # type: ignore[index]
        log.info("attempt started", number=decision.attempt.number)
        self._metrics.attempt_started(env)
        try:
            spec = self._registry.get(job.type)
        except UnknownJobTypeError as exc:
            outcome = Outcome(AttemptOutcome.FAILED, error=str(exc), permanent=True)
        else:
            try:
                outcome = await execute(spec, ctx, job.timeout_s)
            except asyncio.CancelledError:
                self._running[task] = None  # type: ignore[index]  # no second cancel now
                if job.id in self._cancelled:  # POST /cancel: record it, ack, carry on
                    task.uncancel()  # type: ignore[union-attr]
                    self._cancelled.discard(job.id)
                    outcome = Outcome(AttemptOutcome.CANCELLED, error="cancelled by request")
                    await self._record(decision, outcome)
                    await settle(message.ack())
                    return
                # Graceful shutdown ran out of grace: record it, then requeue.
                outcome = Outcome(AttemptOutcome.INTERRUPTED, error="worker shut down")
                await asyncio.shield(self._record(decision, outcome))
                await settle(message.nack(requeue=True))
                raise
        # The handler is done: a cancel signal from now on must not interrupt the
        # bookkeeping below (no await ran since execute returned, so none slipped in).
        self._running[task] = None  # type: ignore[index]
        stored = await self._record(decision, outcome)
        if stored is not None and stored.status is JobStatus.RETRYING:
            try:
                await dispatch(self._outbox, self._publisher, stored)
            except BrokerUnavailableError as exc:
                log.warning("retry not published now; the outbox relay will", error=str(exc))
        elif stored is not None and stored.status is JobStatus.FAILED:
            await self._park(message, stored)
        await settle(message.ack())

    async def _record(self, run: Run, outcome: Outcome) -> Job | None:
        duration_s = (utcnow() - run.attempt.started_at).total_seconds()
        stored = await finish(
            self._store, self._outbox, self._events, run, outcome, rand=_jitter.random()
        )
        self._metrics.attempt_finished(
            run.job.type, outcome.outcome, outcome.error_type, stored, duration_s
        )
        log.info(
            "attempt finished",
            outcome=outcome.outcome.value,
            error=outcome.error,
            status=stored.status.value if stored else None,
            next_attempt_at=stored.next_attempt_at.isoformat()
            if stored and stored.next_attempt_at
            else None,
        )
        return stored

    async def _park(self, message: AbstractIncomingMessage, job: Job) -> None:
        """The final dead letter: a copy in the parking lot, the reason in its headers."""
        reason = job.dead_letter.reason if job.dead_letter else "failed"
        self._metrics.dead_lettered.labels(job.type, reason).inc()
        headers = {
            "x-conveyor-job-id": job.id,
            "x-conveyor-type": job.type,
            "x-conveyor-attempts": len(job.attempts),
            "x-conveyor-error": (job.error or "")[:1000],
        }
        try:
            await self._publisher.park(message.body, reason, headers)
        except BrokerUnavailableError as exc:
            log.warning("job failed but its parking-lot copy was not published", error=str(exc))
        else:
            log.info("job parked", reason=reason)

    async def drain(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for in-flight jobs, then interrupt the rest."""
        tasks = set(self._running)
        if tasks:
            log.info("draining in-flight jobs", count=len(tasks), grace_s=grace_s)
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                ctx = self._running.get(task)
                if ctx is not None:
                    ctx.stop_requested.set()
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
