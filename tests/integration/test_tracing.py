"""One trace from the HTTP request through the worker to the webhook.

The three services run in this process, each with its own tracer provider
(``service.name`` conveyor-api, -worker, -notifier) exporting to the SDK's
in-memory exporter; they talk only through the real RabbitMQ and MongoDB-wire
server, as they would across machines, so the context can only travel in the
message headers. A real HTTP receiver gets the webhook and its ``traceparent``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pymongo import AsyncMongoClient
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conveyor_api.app import create_app
from conveyor_api.settings import ApiSettings
from conveyor_kernel.mongo import Document
from conveyor_kernel.notifications import new_secret
from conveyor_kernel.tracing import Tracing, new_provider
from conveyor_notifier import main as notifier_main
from conveyor_notifier.settings import NotifierSettings
from conveyor_worker import main as worker_main
from conveyor_worker.settings import WorkerSettings
from tests.infra import Infra, free_port
from tests.receivers import Receiver
from tests.stack import ADMIN, ADMIN_KEY, Stack, wait_ready

pytestmark = pytest.mark.integration

SECRET = new_secret()
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass
class InProcess:
    api: httpx.AsyncClient
    exporter: InMemorySpanExporter

    def spans(self, trace_id: str) -> list[ReadableSpan]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if s.context is not None and f"{s.context.trace_id:032x}" == trace_id
        ]

    async def wait_spans(self, trace_id: str, name: str, timeout: float = 30) -> list[ReadableSpan]:
        deadline = time.monotonic() + timeout
        while not any(s.name == name for s in self.spans(trace_id)):
            assert time.monotonic() < deadline, f"no {name!r} span: {tree(self.spans(trace_id))}"
            await asyncio.sleep(0.05)
        return self.spans(trace_id)


@pytest.fixture
async def traced(
    infra: Infra,
    namespace: str,
    mongo: AsyncMongoClient[Document],
    amqp: aio_pika.abc.AbstractConnection,
) -> AsyncIterator[InProcess]:
    exporter = InMemorySpanExporter()

    def tracing(service: str) -> Tracing:
        return Tracing(service, new_provider(service, [SimpleSpanProcessor(exporter)]))

    common: dict[str, Any] = {
        "amqp_url": infra.amqp_url,
        "mongodb_url": infra.mongodb_url,
        "mongodb_db": f"conveyor_{namespace}",
        "namespace": namespace,
        "webhook_secret": SECRET,
    }
    port = free_port()
    app = create_app(
        ApiSettings(**common, api_port=port, admin_key=ADMIN_KEY, rate_limit_per_s=0),
        tracing("conveyor-api"),
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(server.serve()),
        asyncio.create_task(
            worker_main.run(
                WorkerSettings(
                    **common,
                    worker_id="traced",
                    metrics_port=0,
                    # every event reaches the notifier (its span is the tests' sync point)
                    events_gate_refresh_s=0,
                ),
                stop=stop,
                tracing=tracing("conveyor-worker"),
            )
        ),
        asyncio.create_task(
            notifier_main.run(
                NotifierSettings(
                    **common,
                    metrics_port=0,
                    notify_allowed_networks=json.loads('["127.0.0.1/32"]'),
                ),
                stop=stop,
                tracing=tracing("conveyor-notifier"),
            )
        ),
    ]
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers=ADMIN, timeout=30
    ) as client:
        await wait_ready(client)
        yield InProcess(client, exporter)
    stop.set()
    server.should_exit = True
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)


def tree(spans: Sequence[ReadableSpan]) -> str:
    """The spans as an indented tree: ``service  kind  name``."""
    ids = {s.context.span_id for s in spans if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in sorted(spans, key=lambda s: s.start_time or 0):
        parent = s.parent.span_id if s.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(s)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in children.get(parent, []):
            service = s.resource.attributes.get("service.name")
            took = ((s.end_time or 0) - (s.start_time or 0)) / 1e6
            lines.append(f"{'  ' * depth}{service}  {s.kind.name}  {s.name}  ({took:.1f} ms)")
            assert s.context is not None
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


def parent_of(spans: Sequence[ReadableSpan], span: ReadableSpan) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    (parent,) = [s for s in spans if s.context and s.context.span_id == span.parent.span_id]
    return parent


async def test_one_trace_from_request_to_webhook(traced: InProcess, httpserver: HTTPServer):
    receiver = Receiver(httpserver)
    caller = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"
    resp = await traced.api.post(
        "/v1/jobs",
        json={"type": "echo", "payload": {"n": 1}, "notify": {"webhook": {"url": receiver.url}}},
        headers={"traceparent": caller},
    )
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["trace_id"] == CALLER_TRACE  # the caller's trace goes on

    (request,) = await receiver.wait_for(1)
    spans = await traced.wait_spans(CALLER_TRACE, "deliver")
    print(f"\nspans of trace {CALLER_TRACE}:\n{tree(spans)}")
    services = {s.resource.attributes.get("service.name") for s in spans}
    assert services == {"conveyor-api", "conveyor-worker", "conveyor-notifier"}

    # request -> enqueue -> attempt -> event fan-out -> delivery -> webhook POST
    post = only(spans, "POST /v1/jobs")
    assert post.kind is SpanKind.SERVER
    assert post.parent is not None
    assert f"{post.parent.span_id:016x}" == "00f067aa0ba902b7"
    enqueue = only(spans, "enqueue echo")
    assert enqueue.kind is SpanKind.PRODUCER
    assert parent_of(spans, enqueue) is post
    commit = only(spans, "commit jobs")  # the group write and publish, in the API
    assert parent_of(spans, commit) is enqueue
    attempt = only(spans, "process echo")
    assert attempt.kind is SpanKind.CONSUMER
    assert attempt.resource.attributes["service.name"] == "conveyor-worker"
    assert parent_of(spans, attempt) is enqueue
    assert attempt.attributes is not None
    assert attempt.attributes["conveyor.job.id"] == job["id"]
    assert attempt.attributes["conveyor.job.outcome"] == "completed"
    fanout = only(spans, "process job.completed")
    assert fanout.resource.attributes["service.name"] == "conveyor-notifier"
    assert parent_of(spans, fanout) is attempt
    deliver = only(spans, "deliver")
    assert parent_of(spans, deliver) is fanout
    (webhook,) = [s for s in spans if s.kind is SpanKind.CLIENT and s.name == "POST"]
    assert parent_of(spans, webhook) is deliver
    assert webhook.attributes is not None
    assert "?" not in str(webhook.attributes["url.full"])

    # The receiver sees the webhook's own span as the parent.
    assert webhook.context is not None
    assert request.headers["Traceparent"] == (
        f"00-{CALLER_TRACE}-{webhook.context.span_id:016x}-01"
    )
    # No span of the trace is left hanging from one that was not exported.
    ids = {s.context.span_id for s in spans if s.context is not None}
    assert [s.name for s in spans if s.parent and s.parent.span_id not in ids] == ["POST /v1/jobs"]


async def test_every_attempt_of_a_retried_job_joins_its_trace(traced: InProcess):
    resp = await traced.api.post(
        "/v1/jobs",
        json={
            "type": "fail",
            "max_retries": 1,
            "backoff": {"base_s": 0.1, "max_s": 0.1},
        },
    )
    assert resp.status_code == 202, resp.text
    job = resp.json()
    trace_id = job["trace_id"]
    assert trace_id is not None
    assert len(trace_id) == 32
    deadline = time.monotonic() + 60
    while (await traced.api.get(f"/v1/jobs/{job['id']}")).json()["status"] != "completed":
        assert time.monotonic() < deadline, "job did not complete"
        await asyncio.sleep(0.1)
    spans = await traced.wait_spans(trace_id, "process job.completed")
    attempts = [s for s in spans if s.name == "process fail"]
    assert len(attempts) == 2, tree(spans)
    enqueue = only(spans, "enqueue fail")
    assert [parent_of(spans, a) for a in attempts] == [enqueue, enqueue]
    outcomes = [a.attributes["conveyor.job.outcome"] for a in attempts if a.attributes]
    assert outcomes == ["failed", "completed"]
    assert attempts[0].status.status_code.name == "ERROR"


class OtlpReceiver:
    """A real OTLP/HTTP trace endpoint: ``POST /v1/traces`` with protobuf bodies."""

    def __init__(self, server: HTTPServer) -> None:
        self.spans: list[tuple[str, Any]] = []  # (service.name, protobuf Span)
        self.url = str(server.url_for("/")).rstrip("/")
        server.expect_request("/v1/traces", method="POST").respond_with_handler(self._handle)

    def _handle(self, request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(request.get_data())
        for resource_spans in export.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((attrs["service.name"], s) for s in scope_spans.spans)
        return Response(ExportTraceServiceResponse().SerializeToString(), status=200)

    def trace(self, trace_id: str) -> list[tuple[str, Any]]:
        return [(svc, s) for svc, s in self.spans if s.trace_id.hex() == trace_id]


async def test_services_export_over_otlp_when_an_endpoint_is_set(
    stack: Stack, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
):
    otlp = OtlpReceiver(httpserver)
    receiver = Receiver(httpserver)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    await stack.start_api(webhook_secret=SECRET)
    await stack.start_worker()
    await stack.start_notifier(notify_allowed_networks='["127.0.0.1/32"]', webhook_secret=SECRET)
    job = await stack.submit("echo", notify={"webhook": {"url": receiver.url}})
    (request,) = await receiver.wait_for(1)
    trace_id = job["trace_id"]
    assert request.headers["Traceparent"].split("-")[1] == trace_id
    deadline = time.monotonic() + 30
    while {svc for svc, _ in otlp.trace(trace_id)} != {
        "conveyor-api",
        "conveyor-worker",
        "conveyor-notifier",
    } or not any(s.name == "POST" for _, s in otlp.trace(trace_id)):
        assert time.monotonic() < deadline, f"spans so far: {otlp.trace(trace_id)}"
        await asyncio.sleep(0.1)
    spans = otlp.trace(trace_id)
    print(
        "\n".join(
            f"{svc}  {s.name}" for svc, s in sorted(spans, key=lambda x: x[1].start_time_unix_nano)
        )
    )
    # PyMongo's instrumentation: the attempt's finishing write is in the trace ...
    by_id = {s.span_id: s for _, s in spans}
    (attempt,) = [s for _, s in spans if s.name == "process echo"]
    writes = [s for svc, s in spans if svc == "conveyor-worker" and s.parent_span_id in by_id]
    db = {a.key: a.value.string_value for s in writes for a in s.attributes}
    assert db.get("db.system") == "mongodb" or db.get("db.system.name") == "mongodb"
    assert any(s.parent_span_id == attempt.span_id for s in writes if s is not attempt)
    # ... while the relays' and sweepers' polls start no trace of their own.
    client = 3  # SPAN_KIND_CLIENT
    orphans = [s.name for _, s in otlp.spans if s.kind == client and not s.parent_span_id]
    assert orphans == []


async def test_without_an_endpoint_nothing_is_traced(stack: Stack, httpserver: HTTPServer):
    receiver = Receiver(httpserver)
    await stack.start_api(webhook_secret=SECRET)
    await stack.start_worker()
    await stack.start_notifier(notify_allowed_networks='["127.0.0.1/32"]', webhook_secret=SECRET)
    job = await stack.submit("echo", notify={"webhook": {"url": receiver.url}})
    (request,) = await receiver.wait_for(1)
    assert "Traceparent" not in request.headers
    assert (await stack.client.get(f"/v1/jobs/{job['id']}")).json()["trace_id"] is None
