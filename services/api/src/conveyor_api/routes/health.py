"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from conveyor_api.auth import require
from conveyor_api.keys import Scope
from conveyor_api.state import State
from conveyor_kernel.errors import StoreUnavailableError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (no dependency checks)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "broker or database unreachable"}})
async def readyz(state: State) -> JSONResponse:
    """Ready when RabbitMQ (publisher channel open) and MongoDB (ping) both answer."""
    checks: dict[str, str] = {}
    checks["rabbitmq"] = "ok" if state.publisher.ready else "unreachable"
    try:
        await asyncio.wait_for(state.store.ping(), state.settings.readiness_timeout_s)
        checks["mongodb"] = "ok"
    except (StoreUnavailableError, TimeoutError) as exc:
        checks["mongodb"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        status_code=200 if ready else 503,
        content={"status": "ready" if ready else "not_ready", "checks": checks},
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(state: State, request: Request) -> Response:
    """Prometheus metrics: a jobs:read key unless CONVEYOR_PUBLIC_METRICS is true."""
    if not state.settings.public_metrics:
        await require(Scope.JOBS_READ)(request)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
