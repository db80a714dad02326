"""Accepting jobs: validate, store, publish confirmed; a 503 leaves nothing behind."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import Header
from opentelemetry.trace import Span, SpanKind

from conveyor_api.problems import ApiError
from conveyor_api.state import AppState
from conveyor_kernel import live
from conveyor_kernel.documents import MAX_PAYLOAD_BYTES, encoded_size
from conveyor_kernel.errors import BrokerUnavailableError
from conveyor_kernel.idempotency import MAX_KEY_LENGTH, Conflict, Replay, fingerprint
from conveyor_kernel.logs import get_logger
from conveyor_kernel.model import Job, JobSubmission, new_job_id
from conveyor_kernel.tracing import current_traceparent

log = get_logger(__name__)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="Repeat-safe submit: same key + same body returns the original job",
    ),
]


def check_submissions(state: AppState, subs: list[JobSubmission]) -> None:
    for index, sub in enumerate(subs):
        size = encoded_size(sub.payload)
        if size > MAX_PAYLOAD_BYTES:
            extra = {"index": index} if len(subs) > 1 else {}
            raise ApiError(
                413,
                "payload_too_large",
                f"payload is {size} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES}",
                limit_bytes=MAX_PAYLOAD_BYTES,
                **extra,
            )
    unknown = sorted({(i, s.type) for i, s in enumerate(subs) if s.type not in state.registry})
    if unknown:
        index, name = unknown[0]
        extra = {"index": index} if len(subs) > 1 else {}
        raise ApiError(
            422,
            "unknown_job_type",
            f"unknown job type {name!r}",
            known_types=state.registry.names(),
            **extra,
        )
    hooked = [i for i, s in enumerate(subs) if s.notify and s.notify.webhook]
    if hooked and state.settings.webhook_secret is None:
        extra = {"index": hooked[0]} if len(subs) > 1 else {}
        raise ApiError(
            422,
            "webhooks_not_configured",
            "notify.webhook needs CONVEYOR_WEBHOOK_SECRET on the server to sign deliveries; "
            "use a subscription (POST /v1/webhooks) instead",
            **extra,
        )
    if not state.settings.events_enabled and any(s.notify for s in subs):
        raise ApiError(
            422, "events_disabled", "notify given but CONVEYOR_EVENTS_ENABLED is false here"
        )


async def enqueue(
    state: AppState,
    subs: list[JobSubmission],
    retry_of: str | None = None,
    ids: list[str] | None = None,
    schedule_id: str | None = None,
) -> list[Job]:
    """All or nothing: every job is stored and confirmed by the broker, or none is kept.

    The jobs go through the group committer (:mod:`conveyor_api.committer`):
    outbox group, jobs and confirmed messages are written together with those of
    every concurrent request. If the broker refuses any message of this request,
    its jobs are deleted and ``BrokerUnavailableError`` (503) is raised.
    """
    check_submissions(state, subs)
    if not state.publisher.ready:
        raise BrokerUnavailableError("broker connection is not open")
    with _enqueue_span(state, subs) as span:
        timeout = state.settings.default_job_timeout_s
        trace = current_traceparent() if span is not None else None
        jobs = [
            Job.from_submission(
                s,
                default_timeout_s=timeout,
                retry_of=retry_of,
                job_id=ids[i] if ids else None,
                retention_s=state.settings.job_retention_s,
                failed_retention_s=state.settings.failed_job_retention_s,
                schedule_id=schedule_id,
                trace=trace,
            )
            for i, s in enumerate(subs)
        ]
        if span is not None and len(jobs) == 1:
            span.set_attribute("conveyor.job.id", jobs[0].id)
        await state.submits.commit(jobs)
    if state.live.watched:
        state.live.emit(*(live.queued(job) for job in jobs))
    for job in jobs:
        state.metrics.submitted.labels(job.type, str(job.priority)).inc()
    log.debug("jobs accepted", count=len(jobs), first_job_id=jobs[0].id, type=jobs[0].type)
    return jobs


def _enqueue_span(
    state: AppState, subs: list[JobSubmission]
) -> AbstractContextManager[Span | None]:
    """The request's PRODUCER span (its jobs keep its context); nothing when off."""
    if not state.tracing.enabled:
        return contextlib.nullcontext()
    types = sorted({s.type for s in subs})
    return state.tracing.span(
        f"enqueue {types[0] if len(types) == 1 else 'batch'}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.destination.name": state.topology.jobs_exchange,
            "messaging.batch.message_count": len(subs),
            "conveyor.job.type": ",".join(types)[:200],
        },
    )


async def enqueue_once(
    state: AppState,
    subs: list[JobSubmission],
    key: str | None,
    body: object,
    *,
    schedule_id: str | None = None,
) -> tuple[list[Job], bool]:
    """:func:`enqueue` behind an ``Idempotency-Key``; returns ``(jobs, replayed)``.

    Same key and same body: the jobs of the first request (``replayed``). Same key
    and another body, or the first request still running: 409.
    """
    if key is None:
        return await enqueue(state, subs, schedule_id=schedule_id), False
    planned = [new_job_id() for _ in subs]
    claim = await state.idempotency.claim(key, fingerprint(body), planned)
    if isinstance(claim, Conflict):
        if claim.reason == "different_body":
            raise ApiError(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
            )
        raise ApiError(
            409,
            "idempotency_key_in_progress",
            "a request with this Idempotency-Key is still being processed",
        )
    if isinstance(claim, Replay):
        stored = [await state.store.get(job_id) for job_id in claim.job_ids]
        found = [j for j in stored if j is not None]
        if len(found) != len(stored):
            raise ApiError(
                409,
                "idempotency_key_jobs_deleted",
                "the jobs created under this Idempotency-Key were deleted",
            )
        return found, True
    try:
        if claim.taken_over:
            jobs = await enqueue_missing(state, subs, claim.job_ids, schedule_id)
        else:
            jobs = await enqueue(state, subs, ids=claim.job_ids, schedule_id=schedule_id)
    except BaseException:
        await state.idempotency.release(key)
        raise
    await state.idempotency.complete(key, [j.id for j in jobs])
    return jobs, False


async def enqueue_missing(
    state: AppState, subs: list[JobSubmission], ids: list[str], schedule_id: str | None = None
) -> list[Job]:
    """A taken-over key: the jobs its dead request stored stand (the outbox
    publishes them); only the missing ones are submitted, with the planned ids."""
    stored = {job_id: await state.store.get(job_id) for job_id in ids}
    missing = [i for i, job_id in enumerate(ids) if stored[job_id] is None]
    if missing:
        fresh = await enqueue(
            state,
            [subs[i] for i in missing],
            ids=[ids[i] for i in missing],
            schedule_id=schedule_id,
        )
        stored |= {job.id: job for job in fresh}
    log.info("idempotency key taken over", found=len(ids) - len(missing), submitted=len(missing))
    return [job for job_id in ids if (job := stored[job_id]) is not None]
