"""Notifier building blocks without servers: signing, classification, policy, templates."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook

from conveyor_kernel.events import job_event
from conveyor_kernel.model import Job, JobStatus, JobSubmission
from conveyor_kernel.notifications import (
    Channel,
    Delivery,
    DeliveryStatus,
    PreviousSecret,
    Subscription,
    new_secret,
)
from conveyor_kernel.notify_spec import EventType, NotifySpec
from conveyor_notifier.email import MailtrapApiTransport, SmtpTransport, Templates
from conveyor_notifier.outcome import AttemptResult, RetryPolicy, parse_retry_after, record
from conveyor_notifier.settings import DEFAULT_SCHEDULE_S, NotifierSettings
from conveyor_notifier.ssrf import DestinationRefusedError, forbidden_reason, resolve
from conveyor_notifier.webhook import WebhookSender, classify, origin, sign

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def job(status: JobStatus = JobStatus.COMPLETED, **extra: object) -> Job:
    sub = JobSubmission(type="echo", notify={"webhook": {"url": "https://example.com/h"}})
    base = Job.from_submission(sub, default_timeout_s=10)
    return base.model_copy(update={"status": status, **extra})


def test_signature_verifies_with_the_reference_library() -> None:
    secret = new_secret()
    body = '{"type":"job.completed","timestamp":"2026-11-27T12:00:00Z","data":{}}'
    ts = int(datetime.now(UTC).timestamp())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": sign([secret], "msg_1", ts, body),
    }
    assert Webhook(secret).verify(body, headers)["type"] == "job.completed"
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(new_secret()).verify(body, headers)
    tampered = body.replace("completed", "failed")
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(secret).verify(tampered, headers)


def test_rotation_sends_one_signature_per_secret() -> None:
    old, new = new_secret(), new_secret()
    header = sign([new, old], "m", 1, "{}")
    assert len(header.split(" ")) == 2
    assert all(part.startswith("v1,") for part in header.split(" "))


def test_subscription_signs_with_unexpired_previous_secrets_only() -> None:
    sub = Subscription(
        id="wh_1",
        url="https://example.com",
        events=[EventType.COMPLETED],
        secret="whsec_new",
        previous_secrets=[
            PreviousSecret(secret="whsec_old", expires_at=NOW + timedelta(hours=1)),
            PreviousSecret(secret="whsec_older", expires_at=NOW - timedelta(seconds=1)),
        ],
        created_at=NOW,
        updated_at=NOW,
    )
    assert sub.signing_secrets(NOW) == ["whsec_new", "whsec_old"]


@pytest.mark.parametrize(
    ("status", "delivered", "retryable", "gone"),
    [
        (200, True, False, False),
        (204, True, False, False),
        (410, False, False, True),
        (429, False, True, False),
        (408, False, True, False),
        (500, False, True, False),
        (503, False, True, False),
        (400, False, False, False),
        (404, False, False, False),
        (301, False, False, False),
    ],
)
def test_classify(status: int, delivered: bool, retryable: bool, gone: bool) -> None:
    result = classify(httpx.Response(status))
    assert (result.delivered, result.retryable, result.gone) == (delivered, retryable, gone)
    assert result.status_code == status


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("Fri, 27 Nov 2026 12:00:30 GMT", NOW) == 30.0
    assert parse_retry_after("Fri, 27 Nov 2026 11:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_default_schedule_spans_more_than_a_day() -> None:
    assert sum(DEFAULT_SCHEDULE_S) >= 86400
    assert NotifierSettings().max_attempts == len(DEFAULT_SCHEDULE_S) + 1
    with pytest.raises(ValidationError):
        NotifierSettings(notify_retry_schedule_s=[1, -1])


def test_policy_jitter_and_retry_after() -> None:
    policy = RetryPolicy((10.0, 60.0), jitter=0.2, retry_after_max_s=3600)
    plain = AttemptResult.retry("HTTP 500", 500)
    assert policy.delay_s(1, plain, 0.0) == 10.0
    assert policy.delay_s(1, plain, 0.999) == pytest.approx(11.998)
    assert policy.delay_s(2, AttemptResult.retry("x", 429, 300.0), 0.0) == 300.0
    assert policy.delay_s(2, AttemptResult.retry("x", 429, 1e9), 0.0) == 3600
    assert policy.delay_s(2, AttemptResult.retry("x", 429, 1.0), 0.0) == 60.0


def delivery() -> Delivery:
    return Delivery(
        id="e:job-webhook",
        event_id="e",
        event_type=EventType.COMPLETED,
        job_id="j",
        channel=Channel.WEBHOOK,
        destination="https://example.com",
        event="{}",
        created_at=NOW,
        updated_at=NOW,
    )


def test_record_walks_the_schedule_then_gives_up() -> None:
    policy = RetryPolicy((1.0,), jitter=0, retry_after_max_s=10)
    after = NOW + timedelta(seconds=2)
    first = record(
        delivery(),
        AttemptResult.retry("HTTP 500", 500),
        started=NOW,
        finished=after,
        latency_ms=2000,
        policy=policy,
        rand=0,
    )
    assert first.status is DeliveryStatus.RETRYING
    assert first.next_attempt == 2
    assert first.next_attempt_at == after + timedelta(seconds=1)
    second = record(
        first,
        AttemptResult.retry("HTTP 500", 500),
        started=NOW,
        finished=after,
        latency_ms=1,
        policy=policy,
        rand=0,
    )
    assert second.status is DeliveryStatus.FAILED
    assert second.error == "HTTP 500 (gave up after 2 attempts)"
    assert [a.outcome for a in second.attempts] == [DeliveryStatus.RETRYING, DeliveryStatus.FAILED]


def test_permanent_result_fails_at_once() -> None:
    policy = RetryPolicy((1.0, 1.0), jitter=0, retry_after_max_s=10)
    done = record(
        delivery(),
        AttemptResult.permanent("HTTP 404", 404),
        started=NOW,
        finished=NOW,
        latency_ms=1,
        policy=policy,
        rand=0,
    )
    assert done.status is DeliveryStatus.FAILED
    assert done.next_attempt_at is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private-use"),
        ("192.168.1.1", "private-use"),
        ("172.16.0.1", "private-use"),
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "this-network"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "shared-address-space (carrier-grade NAT)"),
        ("100.100.100.200", "shared-address-space (carrier-grade NAT)"),  # a cloud's metadata
        ("192.0.0.192", "ietf-protocol-assignments"),  # is_global on Python 3.11.7
        ("192.0.0.9", "ietf-protocol-assignments"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.254", "benchmarking"),
        ("fd00:ec2::254", "unique-local (includes cloud metadata fd00:ec2::254)"),
        ("fc00::1", "unique-local (includes cloud metadata fd00:ec2::254)"),
        ("64:ff9b::a00:1", "nat64"),
        ("64:ff9b::808:808", "nat64"),  # even to a public IPv4: the translator is local
        ("::ffff:10.0.0.1", "private-use"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
    ],
)
def test_forbidden_reason(address: str, reason: str | None) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


async def test_resolve_refuses_then_admits_with_allowlist() -> None:
    url = httpx.URL("http://127.0.0.1:8080/hook")
    with pytest.raises(DestinationRefusedError, match="loopback"):
        await resolve(url, [])
    target = await resolve(url, [ipaddress.ip_network("127.0.0.0/8")])
    assert str(target.address) == "127.0.0.1"
    assert target.host_header() == "127.0.0.1:8080"
    with pytest.raises(DestinationRefusedError, match="scheme"):
        await resolve(httpx.URL("file:///etc/passwd"), [])


async def test_resolve_checks_names_after_dns() -> None:
    with pytest.raises(DestinationRefusedError, match="localhost resolves to a loopback") as exc:
        await resolve(httpx.URL("http://localhost/hook"), [])
    assert "127.0.0.1" not in str(exc.value)  # the rule, never the resolved address


async def test_pinned_https_keeps_the_name_for_sni_and_host() -> None:
    target = await resolve(
        httpx.URL("https://localhost:8443/h"), [ipaddress.ip_network("127.0.0.0/8")]
    )
    assert target.pinned_url().host in {"127.0.0.1", "::1"}
    assert target.request_extensions() == {"sni_hostname": "localhost"}
    assert target.host_header() == "localhost:8443"


def test_event_ids_are_deterministic_per_attempt_and_kind() -> None:
    j = job(JobStatus.COMPLETED)
    event = job_event(j, "https://c.example.com/")
    assert event is not None
    assert event.id == f"{j.id}.0.completed"
    assert event.type is EventType.COMPLETED
    assert event.job.url == f"https://c.example.com/v1/jobs/{j.id}"
    assert job_event(j, "x") is not None
    assert job_event(job(JobStatus.RUNNING), "x") is None
    assert job_event(job(JobStatus.QUEUED), "x") is None


def test_big_results_are_left_out_of_events() -> None:
    event = job_event(job(result={"blob": "x" * 20_000}), "x")
    assert event is not None
    assert event.job.result is None
    assert event.job.result_omitted is True


def test_webhook_body_shape() -> None:
    event = job_event(job(JobStatus.FAILED, error="boom"), "x")
    assert event is not None
    body = json.loads(event.webhook_body())
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "job.failed"
    assert body["timestamp"].endswith("Z")
    assert body["data"]["error"] == "boom"


@pytest.mark.parametrize(
    "notify",
    [
        {"webhook": {"url": "https://user:pw@example.com/"}},
        {"webhook": {"url": "ftp://example.com/"}},
        {"webhook": {"url": "https://example.com/", "events": []}},
        {"email": {"to": []}},
        {"email": {"to": ["nobody"]}},
        {"sms": {}},
    ],
)
def test_bad_notify_specs_are_refused(notify: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        NotifySpec.model_validate(notify)


def test_templates_escape_html_but_not_text() -> None:
    event = job_event(job(JobStatus.FAILED, error="<script>alert(1)</script>"), "x")
    assert event is not None
    mail = Templates().render(event)
    assert "failed" in mail.subject
    assert "\n" not in mail.subject
    assert "<script>alert(1)</script>" in mail.text
    assert "<script>" not in mail.html
    assert "&lt;script&gt;" in mail.html


def test_smtp_message_is_multipart_with_event_id() -> None:
    settings = NotifierSettings(email_from="Jobs <jobs@example.com>")
    event = job_event(job(JobStatus.COMPLETED), "https://c.example.com")
    assert event is not None
    msg = SmtpTransport(settings).message(["a@example.com"], Templates().render(event), event.id)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["X-Conveyor-Event-Id"] == event.id
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_mailtrap_request_follows_the_send_api_contract() -> None:
    settings = NotifierSettings(
        email_transport="mailtrap-api",
        mailtrap_api_token="t",
        email_from="Jobs <jobs@example.com>",
    )
    event = job_event(job(JobStatus.COMPLETED), "x")
    assert event is not None
    transport = MailtrapApiTransport(settings, httpx.AsyncClient())
    body = transport.body(["a@example.com"], Templates().render(event), event.id)
    assert body["from"] == {"email": "jobs@example.com", "name": "Jobs"}
    assert body["to"] == [{"email": "a@example.com"}]
    assert {"subject", "text", "html", "category"} <= set(body)


def test_mailtrap_needs_a_token() -> None:
    settings = NotifierSettings(email_transport="mailtrap-api")
    with pytest.raises(ValueError, match="MAILTRAP_API_TOKEN"):
        MailtrapApiTransport(settings, httpx.AsyncClient())


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("fec0::1", "site-local"),
        ("2002:0a00:0001::1", "private-use"),  # 6to4 wrapping 10.0.0.1
        ("2002:0808:0808::1", None),  # 6to4 wrapping 8.8.8.8
    ],
)
def test_forbidden_reason_sees_ipv4_inside_ipv6(address: str, reason: str | None) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


def test_webhook_secrets_are_validated() -> None:
    NotifierSettings(webhook_secret=new_secret(), webhook_previous_secrets=[new_secret()])
    for bad in ("plain", "whsec_!!!", "whsec_" + "QUJD"):
        with pytest.raises(ValidationError, match="webhook secret"):
            NotifierSettings(webhook_secret=bad)
        with pytest.raises(ValidationError, match="webhook secret"):
            NotifierSettings(webhook_previous_secrets=[bad])


async def test_invalid_urls_fail_for_good() -> None:
    async with httpx.AsyncClient() as client:
        sender = WebhookSender(client, allowed=[], timeout_s=1, max_redirects=0)
        result = await sender.send("http://a:notaport/", "m", "{}", [new_secret()])
    assert not result.delivered
    assert not result.retryable
    assert result.error is not None
    assert result.error.startswith("invalid URL")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://h.example/x", "https://h.example:443/y?z=1", True),
        ("https://h.example/x", "http://h.example/x", False),  # no downgrade
        ("http://h.example/x", "https://h.example/x", False),
        ("https://h.example/x", "https://other.example/x", False),
        ("https://h.example/x", "https://h.example:8443/x", False),
    ],
)
def test_redirects_stay_within_the_origin(a: str, b: str, same: bool) -> None:
    assert (origin(httpx.URL(a)) == origin(httpx.URL(b))) is same
