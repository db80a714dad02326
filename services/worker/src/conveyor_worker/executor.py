"""Runs one attempt of a handler: the single place where handler errors are classified.

Retryable vs permanent, timeouts and interruption all become an
:class:`~conveyor_kernel.machine.Outcome`; nothing else in the worker
catches handler exceptions.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

from conveyor_kernel.documents import MAX_RESULT_BYTES, as_stored
from conveyor_kernel.errors import PermanentError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.machine import Outcome
from conveyor_kernel.model import AttemptOutcome
from conveyor_kernel.registry import HandlerSpec, JobContext

log = get_logger(__name__)

TRACEBACK_TAIL_CHARS = 2000


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def _call(spec: HandlerSpec, ctx: JobContext) -> Any:
    if spec.is_async:
        return await spec.func(ctx)
    return await asyncio.to_thread(spec.func, ctx)


async def execute(spec: HandlerSpec, ctx: JobContext, timeout_s: float) -> Outcome:
    """Run the handler; never raises except ``CancelledError`` from outside."""
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            result = await _call(spec, ctx)
    except TimeoutError as exc:
        if not deadline.expired():  # the handler's own TimeoutError: an ordinary failure
            return _retryable(exc)
        ctx.stop_requested.set()
        return Outcome(
            AttemptOutcome.TIMEOUT,
            error=f"timeout: attempt exceeded {timeout_s:g} s",
            error_type="timeout",
        )
    except PermanentError as exc:
        tail = "".join(traceback.format_exception(exc))[-TRACEBACK_TAIL_CHARS:]
        return Outcome(
            AttemptOutcome.FAILED,
            error=_error_text(exc),
            permanent=True,
            error_type=type(exc).__name__,
            traceback=tail,
        )
    except Exception as exc:  # noqa: BLE001 - handlers may raise anything; classify it here
        return _retryable(exc)
    try:
        # The API serves it as JSON (tuples: lists) and the store must take it.
        result = as_stored(result, MAX_RESULT_BYTES, "the result")
    except (TypeError, ValueError, RecursionError) as exc:
        return Outcome(
            AttemptOutcome.FAILED,
            error=f"result cannot be stored: {exc}"[:1000],
            permanent=True,
            error_type="UnstorableResult",
        )
    return Outcome(AttemptOutcome.COMPLETED, result=result)


def _retryable(exc: Exception) -> Outcome:
    tail = "".join(traceback.format_exception(exc))[-TRACEBACK_TAIL_CHARS:]
    log.warning("handler raised", error=_error_text(exc), traceback_tail=tail)
    return Outcome(
        AttemptOutcome.FAILED, error=_error_text(exc), error_type=type(exc).__name__, traceback=tail
    )
