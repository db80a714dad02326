"""Built-in demo job types: echo, sleep, email, image-process, report-gen, fail, fail-absolute."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor_kernel.errors import PermanentError, RetryableError
from conveyor_kernel.registry import HandlerRegistry, JobContext

DEFAULT_SIMULATED_S = 0.2
MAX_SLEEP_S = 24 * 3600.0


def _seconds(payload: dict[str, Any], key: str, default: float) -> float:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentError(f"payload.{key} must be a number, got {value!r}")
    if not 0 <= value <= MAX_SLEEP_S:
        raise PermanentError(f"payload.{key} must be between 0 and {MAX_SLEEP_S:.0f}")
    return float(value)


async def echo(ctx: JobContext) -> dict[str, Any]:
    """Returns its payload."""
    return ctx.payload


async def sleep(ctx: JobContext) -> dict[str, float]:
    """Sleeps payload.seconds (default 1)."""
    seconds = _seconds(ctx.payload, "seconds", 1.0)
    await asyncio.sleep(seconds)
    return {"slept_s": seconds}


def _simulated(kind: str) -> Any:
    async def run(ctx: JobContext) -> dict[str, Any]:
        seconds = _seconds(ctx.payload, "duration_s", DEFAULT_SIMULATED_S)
        await asyncio.sleep(seconds)
        return {"kind": kind, "simulated_s": seconds, "input_keys": sorted(ctx.payload)}

    run.__doc__ = (
        f"Simulated {kind} work lasting payload.duration_s (default {DEFAULT_SIMULATED_S})."
    )
    return run


async def fail(ctx: JobContext) -> dict[str, Any]:
    """Fails every attempt but the last one allowed by max_retries."""
    if not ctx.is_last_attempt:
        raise RetryableError(f"planned failure on attempt {ctx.attempt}")
    return {"succeeded_on_attempt": ctx.attempt}


async def fail_absolute(ctx: JobContext) -> None:
    """Always fails (exhausts its retries)."""
    raise RetryableError(f"fail-absolute always fails (attempt {ctx.attempt})")


def register(registry: HandlerRegistry) -> None:
    registry.register("echo", echo)
    registry.register("sleep", sleep)
    registry.register("email", _simulated("email"))
    registry.register("image-process", _simulated("image-process"))
    registry.register("report-gen", _simulated("report-gen"))
    registry.register("fail", fail)
    registry.register("fail-absolute", fail_absolute)
