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


PROGRESS_STEP_S = 0.5  # report at most this often (the worker writes one a second)
MAX_PROGRESS_STEPS = 100


async def _in_steps(ctx: JobContext, seconds: float, label: str) -> None:
    """Wait ``seconds``, reporting progress along the way."""
    steps = max(1, min(MAX_PROGRESS_STEPS, int(seconds / PROGRESS_STEP_S)))
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        ctx.progress(step / steps, f"{label} {step}/{steps}")


async def sleep(ctx: JobContext) -> dict[str, float]:
    """Sleeps payload.seconds (default 1), reporting progress."""
    seconds = _seconds(ctx.payload, "seconds", 1.0)
    await _in_steps(ctx, seconds, "slept step")
    return {"slept_s": seconds}


def _simulated(kind: str) -> Any:
    async def run(ctx: JobContext) -> dict[str, Any]:
        seconds = _seconds(ctx.payload, "duration_s", DEFAULT_SIMULATED_S)
        if kind == "email":
            await asyncio.sleep(seconds)
        else:
            await _in_steps(ctx, seconds, f"{kind} step")
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
