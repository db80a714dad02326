"""executor.execute: the one place handler results and errors are classified."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conveyor_kernel.errors import PermanentError, RetryableError
from conveyor_kernel.model import AttemptOutcome
from conveyor_kernel.registry import HandlerFunc, HandlerRegistry, HandlerSpec, JobContext
from conveyor_worker.executor import execute

SMALL_TIMEOUT = 0.05


def spec_for(func: HandlerFunc) -> HandlerSpec:
    reg = HandlerRegistry()
    reg.register("t", func)
    return reg.get("t")


def make_ctx(payload: dict[str, Any] | None = None) -> JobContext:
    return JobContext(
        job_id="j1",
        type="t",
        payload=payload or {},
        attempt=1,
        max_retries=3,
        is_last_attempt=False,
    )


async def test_completed_with_result() -> None:
    async def handler(ctx: JobContext) -> dict[str, Any]:
        return {"echo": ctx.payload["x"]}

    out = await execute(spec_for(handler), make_ctx({"x": [1, 2]}), timeout_s=5)
    assert out.outcome is AttemptOutcome.COMPLETED
    assert out.result == {"echo": [1, 2]}
    assert out.error is None
    assert out.permanent is False


async def test_sync_handler_runs_in_a_thread() -> None:
    loop_thread: list[bool] = []

    def handler(ctx: JobContext) -> int:
        try:
            asyncio.get_running_loop()
            loop_thread.append(True)
        except RuntimeError:
            loop_thread.append(False)
        return len(ctx.payload)

    spec = spec_for(handler)
    assert spec.is_async is False
    out = await execute(spec, make_ctx({"a": 1, "b": 2}), timeout_s=5)
    assert out.outcome is AttemptOutcome.COMPLETED
    assert out.result == 2
    assert loop_thread == [False]


async def test_async_timeout() -> None:
    async def handler(ctx: JobContext) -> None:
        await asyncio.sleep(10)

    ctx = make_ctx()
    started = time.monotonic()
    out = await execute(spec_for(handler), ctx, timeout_s=SMALL_TIMEOUT)
    assert time.monotonic() - started < 2
    assert out.outcome is AttemptOutcome.TIMEOUT
    assert out.error == "timeout: attempt exceeded 0.05 s"
    assert out.permanent is False
    assert ctx.stop_requested.is_set()


async def test_sync_timeout_sets_stop_requested() -> None:
    def handler(ctx: JobContext) -> str:
        # A well-behaved sync handler polls stop_requested; give up after 5 s at most.
        ctx.stop_requested.wait(5)
        return "stopped"

    ctx = make_ctx()
    started = time.monotonic()
    out = await execute(spec_for(handler), ctx, timeout_s=SMALL_TIMEOUT)
    assert time.monotonic() - started < 2
    assert out.outcome is AttemptOutcome.TIMEOUT
    assert ctx.stop_requested.is_set()


async def test_permanent_error() -> None:
    async def handler(ctx: JobContext) -> None:
        raise PermanentError("bad input")

    out = await execute(spec_for(handler), make_ctx(), timeout_s=5)
    assert out.outcome is AttemptOutcome.FAILED
    assert out.permanent is True
    assert out.error == "PermanentError: bad input"


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ValueError("boom"), "ValueError: boom"),
        (RetryableError("later"), "RetryableError: later"),
        (KeyError("k"), "KeyError: 'k'"),
    ],
)
async def test_other_exceptions_are_retryable(exc: Exception, text: str) -> None:
    async def handler(ctx: JobContext) -> None:
        raise exc

    out = await execute(spec_for(handler), make_ctx(), timeout_s=5)
    assert out.outcome is AttemptOutcome.FAILED
    assert out.permanent is False
    assert out.error == text
    assert out.result is None


async def test_sync_handler_exception_is_classified() -> None:
    def handler(ctx: JobContext) -> None:
        raise PermanentError("sync permanent")

    out = await execute(spec_for(handler), make_ctx(), timeout_s=5)
    assert (out.outcome, out.permanent) == (AttemptOutcome.FAILED, True)
    assert out.error == "PermanentError: sync permanent"


@pytest.mark.parametrize("result", [{"s": {1, 2}}, object(), {"b": b"bytes"}])
async def test_non_json_result_is_permanent_failure(result: object) -> None:
    async def handler(ctx: JobContext) -> object:
        return result

    out = await execute(spec_for(handler), make_ctx(), timeout_s=5)
    assert out.outcome is AttemptOutcome.FAILED
    assert out.permanent is True
    assert out.error is not None
    assert out.error.startswith("result cannot be stored: ")
    assert out.result is None


async def test_none_result_is_completed() -> None:
    async def handler(ctx: JobContext) -> None:
        return None

    out = await execute(spec_for(handler), make_ctx(), timeout_s=5)
    assert out.outcome is AttemptOutcome.COMPLETED
    assert out.result is None


async def test_outside_cancellation_propagates() -> None:
    started = asyncio.Event()

    async def handler(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(execute(spec_for(handler), make_ctx(), timeout_s=30))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_handler_raised_timeout_error_is_a_failure_not_a_timeout() -> None:
    async def handler(ctx: JobContext) -> None:
        raise TimeoutError("upstream API timed out")

    ctx = make_ctx()
    out = await execute(spec_for(handler), ctx, timeout_s=5)
    assert out.outcome is AttemptOutcome.FAILED
    assert out.error == "TimeoutError: upstream API timed out"


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("result", "why"),
    [
        ({"$where": 1}, "starts with '$'"),
        ({"a.b": 1}, "contains '.'"),
        ({"n": 2**70}, "int64"),
        ({"x": float("nan")}, "not finite"),
        ({"deep": nested(40)}, "nesting deeper"),
        ({"big": "x" * (1024 * 1024)}, "the limit is 1048576"),
    ],
)
async def test_result_the_store_cannot_take_is_a_permanent_failure(
    result: object, why: str
) -> None:
    async def handler(ctx: JobContext) -> object:
        return result

    out = await execute(spec_for(handler), make_ctx(), timeout_s=5)
    assert out.outcome is AttemptOutcome.FAILED
    assert out.permanent is True
    assert out.error_type == "UnstorableResult"
    assert why in (out.error or "")


async def test_result_is_normalised_as_json() -> None:
    async def handler(ctx: JobContext) -> object:
        return {1: (2, 3)}  # the API would answer {"1": [2, 3]}; so is it stored

    out = await execute(spec_for(handler), make_ctx(), timeout_s=5)
    assert out.outcome is AttemptOutcome.COMPLETED
    assert out.result == {"1": [2, 3]}
