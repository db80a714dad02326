"""The message callback: parse, decide, run, record, then ack.

The decisions are :mod:`conveyor_kernel.machine`'s and the writes go through
:class:`conveyor_kernel.commit.Committer`. The ack happens only after the
outcome is durable in MongoDB and its effects (retry message, parked copy,
event) are confirmed by the broker. Store or broker trouble requeues the
message (nothing is lost; the redelivery repairs what is missing); a message
that is not a valid envelope is parked.

A fast attempt costs one write: a fresh message carries the job, so it runs
without a read unless a cancel request names it (:mod:`conveyor_worker.cancels`);
it is kept ``running`` in memory and recorded by the finishing write. An attempt still running after
``worker_record_running_after_s`` is written as ``running`` then, so the API
shows it and a lost worker is detected on redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from conveyor_kernel import live, tracing
from conveyor_kernel.broker import Publisher, settle
from conveyor_kernel.commit import Committer
from conveyor_kernel.errors import (
    BrokerUnavailableError,
    ContentionError,
    DocumentRefusedError,
    StoreUnavailableError,
)
from conveyor_kernel.eventgate import EventGate
from conveyor_kernel.live import LiveFeed
from conveyor_kernel.logs import get_logger
from conveyor_kernel.machine import Defer, Outcome, Repair, Run, Skip, Write, admit
from conveyor_kernel.model import AttemptOutcome, Job, JobEnvelope, utcnow
from conveyor_kernel.notifications import SUBSCRIPTIONS_CHANGED
from conveyor_kernel.registry import HandlerRegistry, JobContext, UnknownJobTypeError
from conveyor_kernel.store import JobStore
from conveyor_kernel.topology import delay_tier
from conveyor_kernel.tracing import Tracing, header_traceparent
from conveyor_worker.cancels import CancelWatch
from conveyor_worker.executor import execute
from conveyor_worker.liveness import Liveness
from conveyor_worker.metrics import WorkerMetrics
from conveyor_worker.outcomes import MAX_CAS_ROUNDS, OutcomeWriter
from conveyor_worker.poison import park_poison
from conveyor_worker.progress import ProgressReporter
from conveyor_worker.running import RunningRecorder

log = get_logger(__name__)

STORE_BACKOFF_S = 1.0
UNEXPECTED_BACKOFF_S = 5.0


class JobConsumer:
    def __init__(
        self,
        store: JobStore,
        cancels: CancelWatch,
        committer: Committer,
        publisher: Publisher,
        registry: HandlerRegistry,
        *,
        liveness: Liveness,
        live: LiveFeed,
        gate: EventGate,
        tracing: Tracing,
        worker_id: str,
        metrics: WorkerMetrics,
        record_running_after_s: float,
    ) -> None:
        self._metrics = metrics
        metrics.in_flight.set_function(lambda: len(self._running))
        self._store = store
        self._cancels = cancels
        self._committer = committer
        self._publisher = publisher
        self._record_after_s = record_running_after_s
        self._registry = registry
        self._liveness = liveness
        self._outcomes = OutcomeWriter(store, committer, metrics)
        self._live = live
        self._gate = gate
        self._tracing = tracing
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
        """Control fanout (no ack needed): ``{"action": "cancel", "job_id": ...}``, or
        a watching announcement (:mod:`conveyor_kernel.live`)."""
        try:
            body = json.loads(message.body)
            if isinstance(body, dict) and self._live.on_control(body):
                return
            if isinstance(body, dict) and body.get("action") == SUBSCRIPTIONS_CHANGED:
                self._gate.invalidate()
                return
            action, job_id = body["action"], str(body["job_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed control message", body=message.body[:200])
            return
        if action != "cancel":
            return
        self._cancels.add(job_id)
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
            self._metrics.poison.inc()
            await park_poison(self._publisher, message, exc)
            return
        structlog.contextvars.bind_contextvars(
            job_id=env.job_id, type=env.type, attempt=env.attempt
        )
        attributes = {"conveyor.job.id": env.job_id, "conveyor.job.type": env.type}
        with self._tracing.consume(f"process {env.type}", message, attributes):
            await self._handle_envelope(message, env)

    async def _handle_envelope(self, message: AbstractIncomingMessage, env: JobEnvelope) -> None:
        try:
            await self._process(message, env)
        except (StoreUnavailableError, ContentionError, BrokerUnavailableError) as exc:
            log.warning("store or broker trouble; requeueing the message", error=str(exc))
            await asyncio.sleep(STORE_BACKOFF_S)
            await settle(message.nack(requeue=True))
        except DocumentRefusedError as exc:  # requeueing would loop forever: park it
            log.exception("the store refuses this job's documents; parking it", error=str(exc))
            await settle(message.reject(requeue=False))
        except Exception:
            # A bug, not an outage: requeue after a pause rather than hold the message
            # (and its prefetch slot) unacked until the worker dies.
            log.exception("unexpected error handling a message; requeueing it")
            self._metrics.unexpected.inc()
            await asyncio.sleep(UNEXPECTED_BACKOFF_S)
            await settle(message.nack(requeue=True))

    async def _process(self, message: AbstractIncomingMessage, env: JobEnvelope) -> None:
        if env.not_before is not None:
            wait_s = (env.not_before - utcnow()).total_seconds()
            if delay_tier(wait_s) is not None:
                # Back early from a delay tier: go round again for the rest (no DB write).
                await self._publisher.publish_job(env, header_traceparent(message.headers))
                await settle(message.ack())
                return
            if wait_s > 0:
                await asyncio.sleep(wait_s)  # under the smallest tier (< 1 s)
        run = await self._admit(message, env)
        if run is None:
            await settle(message.ack())
            return
        self._liveness.started(run.job.id, run.attempt.number)
        try:
            await self._run(message, env, run)
        finally:
            self._liveness.ended(run.job.id, run.attempt.number)

    async def _run(self, message: AbstractIncomingMessage, env: JobEnvelope, run: Run) -> None:
        job = run.job
        ctx = JobContext(
            job_id=job.id,
            type=job.type,
            payload=job.payload,
            attempt=run.attempt.number,
            max_retries=job.max_retries,
            is_last_attempt=job.budget_used + 1 > job.max_retries,
        )
        task = asyncio.current_task()
        self._running[task] = ctx  # type: ignore[index]
        log.debug("attempt started", number=run.attempt.number)
        if self._live.watched:
            self._live.emit(live.started(job, run.attempt.number, run.attempt.started_at))
        self._metrics.attempt_started(env)
        recorder = RunningRecorder(
            self._store, run.running, 0.0 if run.record_now else self._record_after_s
        )
        reporter = ProgressReporter(
            self._store, self._live, recorder, job, run.attempt.number, metrics=self._metrics
        )
        ctx.progress_sink = reporter.report
        try:
            if run.record_now:
                await recorder.wait_written()
            spec = self._registry.get(job.type)
        except UnknownJobTypeError as exc:
            outcome = Outcome(AttemptOutcome.FAILED, error=str(exc), permanent=True)
        except asyncio.CancelledError:
            await reporter.close()
            await recorder.settle()
            raise
        else:
            try:
                outcome = await execute(spec, ctx, job.timeout_s)
            except asyncio.CancelledError:
                self._running[task] = None  # type: ignore[index]  # no second cancel now
                if job.id in self._cancelled:  # POST /cancel: record it, ack, carry on
                    task.uncancel()  # type: ignore[union-attr]
                    self._cancelled.discard(job.id)
                    outcome = Outcome(AttemptOutcome.CANCELLED, error="cancelled by request")
                    await self._finish(run, recorder, reporter, outcome)
                    await settle(message.ack())
                    return
                # Graceful shutdown ran out of grace: record it, then requeue.
                outcome = Outcome(AttemptOutcome.INTERRUPTED, error="worker shut down")
                await asyncio.shield(self._finish(run, recorder, reporter, outcome))
                await settle(message.nack(requeue=True))
                raise
        # The handler is done: a cancel signal from now on must not interrupt the
        # bookkeeping below (no await ran since execute returned, so none slipped in).
        self._running[task] = None  # type: ignore[index]
        await self._finish(run, recorder, reporter, outcome)
        await settle(message.ack())

    async def _admit(self, message: AbstractIncomingMessage, env: JobEnvelope) -> Run | None:
        """Decide what to do with ``env``: a :class:`Run`, or ``None`` when the
        message is done with (skipped, repaired or resolved by a write)."""
        redelivered = bool(message.redelivered) or env.watch
        snapshot = None if redelivered or self._cancels.must_read(env) else env.job
        for _ in range(MAX_CAS_ROUNDS):
            if snapshot is not None:  # a fresh message: run it as published, no read
                job: Job | None = Job.model_validate(snapshot)
                snapshot = None
            else:
                job = await self._store.get(env.job_id)
            holder = job.open_attempt if job is not None and redelivered else None
            decision = admit(
                job,
                env,
                self._worker_id,
                utcnow(),
                redelivered=redelivered,
                holder_alive=holder is not None and await self._liveness.alive(env.job_id, holder),
                session=self._liveness.session,
            )
            if isinstance(decision, Run):
                return decision
            log.info("skipping message", reason=decision.reason)
            self._metrics.skipped.inc()
            if isinstance(decision, Skip):
                return None
            if isinstance(decision, Defer):
                await self._publisher.publish_job(
                    self._liveness.watch_copy(env), header_traceparent(message.headers)
                )
                return None
            if isinstance(decision, Repair):
                await self._committer.repair(decision.transition)
                return None
            assert isinstance(decision, Write)
            stored = await self._committer.apply(decision.transition, durable=False)
            if stored is not None:
                self._count_parked(stored)
                return None
        raise ContentionError(f"job {env.job_id}: gave up after {MAX_CAS_ROUNDS} CAS rounds")

    async def _finish(
        self, run: Run, recorder: RunningRecorder, reporter: ProgressReporter, outcome: Outcome
    ) -> None:
        """Close the attempt; its last progress report rides on the finishing write."""
        tracing.annotate(
            {"conveyor.job.attempt": run.attempt.number, "conveyor.job.outcome": outcome.outcome}
        )
        if outcome.error and outcome.outcome is not AttemptOutcome.CANCELLED:
            tracing.mark_failed(outcome.error)
        latest = await reporter.close()
        base = await recorder.settle()
        if base is not None and latest is not None:
            base = base.model_copy(update={"progress": latest})
        await self._record(run, base, outcome)

    async def _record(self, run: Run, base: Job | None, outcome: Outcome) -> Job | None:
        return await self._outcomes.record(run, base, outcome)

    def _count_parked(self, job: Job) -> None:
        self._outcomes.count_parked(job)

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
