"""Email end to end: a real SMTP server (aiosmtpd), and Mailtrap's Send API contract."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.infra import free_port
from tests.receivers import Mailbox, Receiver
from tests.stack import Stack

pytestmark = pytest.mark.integration

FAST = json.dumps([0.3, 0.6])
PUBLIC = "https://conveyor.example.com"
TO = ["ops@example.com", "oncall@example.com"]


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


async def start(stack: Stack, **notifier: Any) -> None:
    await stack.start_api(public_url=PUBLIC)
    await stack.start_worker(public_url=PUBLIC)  # events carry the job's link
    notifier.setdefault("notify_retry_schedule_s", FAST)
    await stack.start_notifier(**notifier)


def email(*events: str) -> dict[str, Any]:
    return {"email": {"to": TO, **({"events": list(events)} if events else {})}}


async def test_failed_job_emails_every_recipient(stack: Stack, mailbox) -> None:
    box, port = mailbox
    await start(stack, smtp_port=port, email_from="Conveyor <jobs@example.com>")
    job = await stack.submit("fail-absolute", max_retries=0, notify=email("job.failed"))
    ((envelope, message),) = await box.wait_for(1)
    assert sorted(envelope.rcpt_tos) == sorted(TO)
    assert envelope.mail_from == "jobs@example.com"
    assert message["Subject"] == f"[Conveyor] fail-absolute job {job['id']} failed"
    assert message["X-Conveyor-Event-Id"] == f"{job['id']}.1.failed"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "fail-absolute always fails" in text
    assert f"https://conveyor.example.com/v1/jobs/{job['id']}" in text
    assert f'href="https://conveyor.example.com/v1/jobs/{job["id"]}"' in html
    assert "Status</th><td>failed" in html
    (delivery,) = await stack.deliveries(job["id"])
    assert delivery["channel"] == "email"
    assert delivery["status"] == "delivered"
    assert delivery["attempts"][0]["status_code"] == 250


async def test_smtp_temporary_refusal_is_retried(stack: Stack, mailbox) -> None:
    box, port = mailbox
    box.replies.append("451 4.3.0 Mailbox busy, try later")
    await start(stack, smtp_port=port)
    job = await stack.submit("echo", notify=email())
    await box.wait_for(1)
    (delivery,) = await stack.deliveries(job["id"])
    assert [a["status_code"] for a in delivery["attempts"]] == [451, 250]
    assert delivery["status"] == "delivered"


async def test_smtp_permanent_refusal_is_not_retried(stack: Stack, mailbox) -> None:
    box, port = mailbox
    box.replies.append("554 5.7.1 Rejected by policy")
    await start(stack, smtp_port=port)
    job = await stack.submit("echo", notify=email())
    (delivery,) = await stack.deliveries(job["id"])
    assert delivery["status"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [554]
    assert "Rejected by policy" in delivery["error"]
    assert box.messages == []


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 and the CA file that trusts it (trustme)."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_tls, ca_file


async def test_implicit_tls(stack: Stack, tls: tuple[ssl.SSLContext, Path]) -> None:
    server_tls, ca_file = tls
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, ssl_context=server_tls)
    controller.start()
    try:
        await start(stack, smtp_port=port, smtp_security="tls", smtp_ca_file=str(ca_file))
        job = await stack.submit("echo", notify=email())
        ((envelope, _),) = await box.wait_for(1)
        assert sorted(envelope.rcpt_tos) == sorted(TO)
        (delivery,) = await stack.deliveries(job["id"])
        assert delivery["status"] == "delivered"
    finally:
        controller.stop()


async def test_starttls_with_auth(stack: Stack, tls: tuple[ssl.SSLContext, Path]) -> None:
    server_tls, ca_file = tls

    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret"
        return AuthResult(success=ok, auth_data=auth_data)

    box = Mailbox()
    port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticate,
    )
    controller.start()
    try:
        await start(
            stack,
            smtp_port=port,
            smtp_security="starttls",
            smtp_ca_file=str(ca_file),
            smtp_username="conveyor",
            smtp_password="s3cret",
        )
        job = await stack.submit("echo", notify=email())
        await box.wait_for(1)
        assert box.logins[0].login == b"conveyor"
        (delivery,) = await stack.deliveries(job["id"])
        assert delivery["status"] == "delivered"
        notifier = next(p for p in stack.procs if p.name == "notifier")
        assert "s3cret" not in notifier.log()
    finally:
        controller.stop()


async def test_mailtrap_send_api(stack: Stack, httpserver: HTTPServer) -> None:
    seen: list[Request] = []

    def send(request: Request) -> Response:
        seen.append(request)
        return Response(
            json.dumps({"success": True, "message_ids": ["0c7fd939-02cf-11ed-88c2-0a58a9feac02"]}),
            status=200,
            content_type="application/json",
        )

    api = Receiver(httpserver, path="/api/send", replies=[send])
    await start(
        stack,
        email_transport="mailtrap-api",
        mailtrap_api_url=api.url,
        mailtrap_api_token="tok-123",
        email_from="Conveyor Jobs <jobs@example.com>",
    )
    job = await stack.submit("echo", notify=email())
    (request,) = await api.wait_for(1)
    assert seen[0].headers["Authorization"] == "Bearer tok-123"
    body = json.loads(request.body)
    assert body["from"] == {"email": "jobs@example.com", "name": "Conveyor Jobs"}
    assert body["to"] == [{"email": a} for a in TO]
    assert body["subject"] == f"[Conveyor] echo job {job['id']} completed"
    assert job["id"] in body["text"]
    assert job["id"] in body["html"]
    assert body["category"] == "conveyor"
    (delivery,) = await stack.deliveries(job["id"])
    assert delivery["status"] == "delivered"
    notifier = next(p for p in stack.procs if p.name == "notifier")
    assert "tok-123" not in notifier.log()


async def test_mailtrap_errors(stack: Stack, httpserver: HTTPServer) -> None:
    def reply(status: int, errors: list[str]) -> Response:
        body = json.dumps({"success": False, "errors": errors})
        return Response(body, status=status, content_type="application/json")

    api = Receiver(
        httpserver,
        path="/api/send",
        replies=[reply(500, ["Internal error"]), reply(401, ["Unauthorized"])],
    )
    await start(
        stack,
        email_transport="mailtrap-api",
        mailtrap_api_url=api.url,
        mailtrap_api_token="wrong",
    )
    job = await stack.submit("echo", notify=email())
    (delivery,) = await stack.deliveries(job["id"])
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 401]
    assert delivery["status"] == "failed"
    assert "Unauthorized" in delivery["error"]
