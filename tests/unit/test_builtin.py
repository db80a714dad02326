"""Built-in demo handlers."""

from __future__ import annotations

import pytest

from conveyor_kernel.errors import PermanentError, RetryableError
from conveyor_kernel.handlers import builtin
from conveyor_kernel.registry import HandlerRegistry, JobContext


def ctx(payload: dict[str, object] | None = None, *, attempt: int = 1, last: bool = False):
    return JobContext(
        job_id="j1",
        type="t",
        payload=dict(payload or {}),
        attempt=attempt,
        max_retries=3,
        is_last_attempt=last,
    )


async def test_echo_returns_payload() -> None:
    payload = {"a": 1, "nested": {"b": [1, 2]}}
    assert await builtin.echo(ctx(payload)) == payload


async def test_fail_raises_retryable_until_last_attempt() -> None:
    with pytest.raises(RetryableError, match="attempt 2"):
        await builtin.fail(ctx(attempt=2))


async def test_fail_succeeds_on_last_attempt() -> None:
    assert await builtin.fail(ctx(attempt=4, last=True)) == {"succeeded_on_attempt": 4}


@pytest.mark.parametrize("last", [False, True])
async def test_fail_absolute_always_raises(last: bool) -> None:
    with pytest.raises(RetryableError, match="always fails"):
        await builtin.fail_absolute(ctx(attempt=3, last=last))


async def test_sleep_zero_seconds() -> None:
    assert await builtin.sleep(ctx({"seconds": 0})) == {"slept_s": 0.0}


async def test_sleep_small_float() -> None:
    assert await builtin.sleep(ctx({"seconds": 0.01})) == {"slept_s": 0.01}


@pytest.mark.parametrize("seconds", ["1", None, True, [1], {"x": 1}])
async def test_sleep_rejects_non_number(seconds: object) -> None:
    with pytest.raises(PermanentError, match="must be a number"):
        await builtin.sleep(ctx({"seconds": seconds}))


@pytest.mark.parametrize("seconds", [-1, -0.001, 24 * 3600 + 1])
async def test_sleep_rejects_out_of_range(seconds: float) -> None:
    with pytest.raises(PermanentError, match="must be between"):
        await builtin.sleep(ctx({"seconds": seconds}))


async def test_simulated_handler_reports_kind_and_keys() -> None:
    reg = HandlerRegistry()
    builtin.register(reg)
    result = await reg.get("report-gen").func(ctx({"duration_s": 0, "z": 1, "a": 2}))
    assert result == {
        "kind": "report-gen",
        "simulated_s": 0.0,
        "input_keys": ["a", "duration_s", "z"],
    }


async def test_simulated_handler_validates_duration() -> None:
    reg = HandlerRegistry()
    builtin.register(reg)
    with pytest.raises(PermanentError, match="duration_s"):
        await reg.get("email").func(ctx({"duration_s": "fast"}))
