"""An OTLP/HTTP trace sink for benchmarks: accepts ``POST /v1/traces``, counts spans.

    python bench/otlp_sink.py --port 4318 &     # then run a bench with --otlp
    kill %1                                     # prints the spans received, by service

Stands in for a collector (Jaeger, the OpenTelemetry Collector) so a bench
measures what exporting costs the services, not what storing traces costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import Counter

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

spans: Counter[str] = Counter()  # service.name -> spans; "" -> export requests


async def traces(request: web.Request) -> web.Response:
    export = ExportTraceServiceRequest.FromString(await request.read())
    spans[""] += 1
    for rs in export.resource_spans:
        attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
        spans[attrs.get("service.name", "?")] += sum(len(ss.spans) for ss in rs.scope_spans)
    return web.Response(
        body=ExportTraceServiceResponse().SerializeToString(),
        content_type="application/x-protobuf",
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=4318)
    args = ap.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    requests = spans.pop("", 0)
    print(json.dumps({"export_requests": requests, "spans": dict(spans)}))


if __name__ == "__main__":
    asyncio.run(main())
