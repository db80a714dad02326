"""A third-party handler module, loaded by import path in test_registry."""

from __future__ import annotations

from typing import Any

from conveyor_kernel.registry import HandlerRegistry, JobContext


async def shout(ctx: JobContext) -> dict[str, Any]:
    """Upper-cases payload.text."""
    return {"text": str(ctx.payload.get("text", "")).upper()}


def count_keys(ctx: JobContext) -> int:
    """Counts payload keys (a sync handler)."""
    return len(ctx.payload)


def register(registry: HandlerRegistry) -> None:
    registry.register("plugin-shout", shout)
    registry.register("plugin-count", count_keys)
