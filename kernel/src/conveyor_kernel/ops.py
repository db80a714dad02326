"""The operations endpoint of processes without an API: ``/metrics``, ``/healthz``, ``/readyz``.

Workers and notifiers serve it on ``CONVEYOR_METRICS_PORT`` (one port per
process; see the README's "Metrics"). It runs inside the process's event loop
(uvicorn, without its signal handling: the process owns SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pymongo import AsyncMongoClient

from conveyor_kernel.broker import connection_is_open
from conveyor_kernel.errors import StoreUnavailableError
from conveyor_kernel.logs import get_logger
from conveyor_kernel.mongo import Document, store_errors

log = get_logger(__name__)

ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the process handles signals itself
        yield


class OpsApp:
    """Plain ASGI app (no framework needed for three read-only paths)."""

    def __init__(self, registry: CollectorRegistry, ready: ReadyCheck) -> None:
        self._registry = registry
        self._ready = ready

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/metrics":
            status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        elif path == "/healthz":
            status, ctype, body = 200, "application/json", b'{"status":"ok"}'
        elif path == "/readyz":
            checks = await self._ready()
            ok = all(checks.values())
            status, ctype = (200 if ok else 503), "application/json"
            body = json.dumps({"status": "ok" if ok else "unavailable", "checks": checks}).encode()
        else:
            status, ctype, body = 404, "application/json", b'{"error":{"code":"not_found"}}'
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def ready_checks(
    connections: list[AbstractRobustConnection],
    mongo: AsyncMongoClient[Document],
    timeout_s: float = 2.0,
) -> dict[str, bool]:
    """``rabbitmq``: every connection open; ``mongodb``: a ping answered in time."""
    try:
        async with store_errors():
            await asyncio.wait_for(mongo.admin.command("ping"), timeout_s)
        mongo_ok = True
    except (StoreUnavailableError, TimeoutError):
        mongo_ok = False
    return {"rabbitmq": all(connection_is_open(c) for c in connections), "mongodb": mongo_ok}


class OpsServer:
    def __init__(
        self, registry: CollectorRegistry, ready: ReadyCheck, host: str, port: int
    ) -> None:
        config = uvicorn.Config(
            OpsApp(registry, ready),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start (e.g. port in use)
                raise RuntimeError("ops server exited at start")
            await asyncio.sleep(0.01)
        log.info("ops endpoint up", port=self._server.config.port)

    @classmethod
    async def serve(
        cls,
        registry: CollectorRegistry,
        connections: list[AbstractRobustConnection],
        mongo: AsyncMongoClient[Document],
        host: str,
        port: int,
    ) -> OpsServer | None:
        """Started on ``host:port`` with the standard readiness checks (``None`` if port 0)."""
        if not port:
            return None
        server = cls(registry, lambda: ready_checks(connections, mongo), host, port)
        await server.start()
        return server

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
