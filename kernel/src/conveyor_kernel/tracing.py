"""OpenTelemetry tracing: one trace from the HTTP request to the worker and the webhook.

**Off unless an OTLP endpoint is configured** (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none`` turn it off again). Off, no SDK is loaded, nothing
is instrumented, no span is made and no header is added: what remains is one
context-variable lookup per published event.

How the context travels (W3C ``traceparent``):

* a job keeps the context of the span that enqueued it (``Job.trace``), and every
  message of the job carries it in its headers, whoever sends it: the API's group
  commit, the outbox relay, a retry through a delay tier, a redrive. So every
  attempt of a job is a child of the same ``enqueue`` span, however late it runs;
* an event or a delivery message carries the context of the span that published
  it (the attempt, the fan-out), so the notifier's spans hang under the attempt;
* an outgoing webhook carries the delivery's context (httpx instrumentation).

Root spans of plain database calls (the relays', sweepers' and schedulers' polls)
are not sampled, unless ``OTEL_TRACES_SAMPLER`` says otherwise: a trace starts
at a request, an enqueue or a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from conveyor_kernel.logs import get_logger

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage as IncomingMessage
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

log = get_logger(__name__)

TRACEPARENT = "traceparent"
_W3C = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or ``None`` without one."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get(TRACEPARENT)


def header_traceparent(headers: Mapping[str, Any] | None) -> str | None:
    """The ``traceparent`` a message's headers carry, if any."""
    value = headers.get(TRACEPARENT) if headers else None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value if isinstance(value, str) else None


def _parent(traceparent: str | None) -> Context | None:
    return _W3C.extract({TRACEPARENT: traceparent}) if traceparent else None


def annotate(attributes: Mapping[str, str | int | float | bool]) -> None:
    """Attributes on the current span (a no-op when nothing records)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)


def mark_failed(error: str) -> None:
    """The current span ends in error (a failed attempt or delivery)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, error[:500]))


class Tracing:
    """A process's tracer; disabled (``Tracing("name")``), every span is a no-op."""

    def __init__(
        self, service: str, provider: TracerProvider | None = None, *, owned: bool = False
    ) -> None:
        self.provider = provider
        self._owned = owned
        self._tracer = provider.get_tracer(f"conveyor.{service}") if provider else None

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @classmethod
    def from_env(cls, service: str) -> Tracing:
        """OTLP/HTTP export if an endpoint is configured; disabled otherwise. Sets
        the global tracer provider (handlers' own spans join the job's trace) and
        instruments PyMongo."""
        env = os.environ
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        off = env.get("OTEL_SDK_DISABLED", "").lower() == "true" or (
            env.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none"
        )
        if not endpoint or off:
            return cls(service)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.instrumentation.pymongo import PymongoInstrumentor  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

        provider = new_provider(service, [BatchSpanProcessor(OTLPSpanExporter())])
        trace.set_tracer_provider(provider)
        PymongoInstrumentor().instrument(tracer_provider=provider)
        where = urlsplit(endpoint)  # never the userinfo or query: they may hold a token
        log.info("tracing on: OTLP/HTTP export", endpoint=f"{where.scheme}://{where.hostname}")
        return cls(service, provider, owned=True)

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        parent: str | None = None,
        links: Sequence[str] = (),
        attributes: Mapping[str, str | int | float | bool] | None = None,
    ) -> Iterator[Span | None]:
        """A span made current for the block: a child of ``parent`` (a
        ``traceparent``) if given, else of the current span; ``links``: the
        ``traceparent`` of other spans it works for (a batch)."""
        if self._tracer is None:
            yield None
            return
        linked = [
            Link(ctx)
            for tp in links
            if (ctx := trace.get_current_span(_parent(tp)).get_span_context()).is_valid
        ]
        with self._tracer.start_as_current_span(
            name, context=_parent(parent), kind=kind, attributes=attributes, links=linked
        ) as span:
            yield span

    def consume(
        self,
        name: str,
        message: IncomingMessage,
        attributes: Mapping[str, str | int | float | bool],
    ) -> contextlib.AbstractContextManager[Span | None]:
        """The span of handling one message: a child of the context it carries."""
        if self._tracer is None:
            return contextlib.nullcontext()
        return self.span(
            name,
            kind=SpanKind.CONSUMER,
            parent=header_traceparent(message.headers),
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": message.exchange or "",
                "messaging.rabbitmq.destination.routing_key": message.routing_key or "",
                "messaging.message.id": message.message_id or "",
                **attributes,
            },
        )

    async def shutdown(self) -> None:
        """Flush and stop export (only a provider this object created)."""
        if self.provider is not None and self._owned:
            await asyncio.to_thread(self.provider.shutdown)


def new_provider(service: str, processors: Sequence[SpanProcessor]) -> TracerProvider:
    """A provider named ``service`` (``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` win), with Conveyor's sampler unless
    ``OTEL_TRACES_SAMPLER`` names one."""
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.sampling import ParentBased  # noqa: PLC0415

    from conveyor_kernel.sampling import NoOrphanClientSpans  # noqa: PLC0415

    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
    sampler = (
        None if os.environ.get("OTEL_TRACES_SAMPLER") else ParentBased(root=NoOrphanClientSpans())
    )
    provider = TracerProvider(resource=Resource.create(named), sampler=sampler)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider
