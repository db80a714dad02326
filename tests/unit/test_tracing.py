"""The tracing module's decisions: when it is off, what it samples, what it reads."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from conveyor_kernel.tracing import (
    Tracing,
    current_traceparent,
    header_traceparent,
    new_provider,
)

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_off_without_an_endpoint_or_when_disabled(monkeypatch: pytest.MonkeyPatch, env):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracing = Tracing.from_env("conveyor-test")
    assert not tracing.enabled
    with tracing.span("anything") as span:
        assert span is None
        assert current_traceparent() is None


def traced(monkeypatch: pytest.MonkeyPatch) -> tuple[Tracing, InMemorySpanExporter]:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    exporter = InMemorySpanExporter()
    provider = new_provider("conveyor-test", [SimpleSpanProcessor(exporter)])
    return Tracing("conveyor-test", provider), exporter


def test_a_client_call_starts_no_trace_but_joins_one(monkeypatch: pytest.MonkeyPatch):
    tracing, exporter = traced(monkeypatch)
    with tracing.span("poll", kind=SpanKind.CLIENT):  # a relay's find, say
        pass
    with (
        tracing.span("process echo", kind=SpanKind.CONSUMER),
        tracing.span("conveyor.update", kind=SpanKind.CLIENT),
    ):
        pass
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["conveyor.update", "process echo"]
    assert exporter.get_finished_spans()[0].resource.attributes["service.name"] == "conveyor-test"


def test_a_span_continues_the_traceparent_it_is_given(monkeypatch: pytest.MonkeyPatch):
    tracing, exporter = traced(monkeypatch)
    with tracing.span("process", parent=TP, links=[TP.replace("b7-01", "b8-01")]):
        mine = current_traceparent()
    (span,) = exporter.get_finished_spans()
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert [f"{link.context.span_id:016x}" for link in span.links] == ["00f067aa0ba902b8"]
    assert mine is not None
    assert mine.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert mine.split("-")[2] != "00f067aa0ba902b7"


def test_a_sampler_named_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    exporter = InMemorySpanExporter()
    tracing = Tracing("t", new_provider("t", [SimpleSpanProcessor(exporter)]))
    with tracing.span("poll", kind=SpanKind.CLIENT):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["poll"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"traceparent": TP}, TP),
        ({"traceparent": TP.encode()}, TP),
        ({"traceparent": 7}, None),
        ({}, None),
        (None, None),
    ],
)
def test_header_traceparent(headers, expected):
    assert header_traceparent(headers) == expected
