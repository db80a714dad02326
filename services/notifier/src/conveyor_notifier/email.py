"""Email notifications: templated per event type, sent by SMTP or Mailtrap's Send API.

Both transports report an :class:`AttemptResult`: an SMTP 4xx reply, a lost
connection or a timeout (or HTTP 429/5xx from Mailtrap) is retried; an SMTP
5xx reply (or another HTTP 4xx) is permanent. Credentials are never logged.
"""

from __future__ import annotations

import email.utils
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import httpx
from jinja2 import Environment, StrictUndefined

from conveyor_kernel.events import JobEvent
from conveyor_kernel.model import utcnow
from conveyor_kernel.notify_spec import EventType
from conveyor_notifier.outcome import AttemptResult, parse_retry_after
from conveyor_notifier.settings import NotifierSettings

SUBJECTS = {
    EventType.COMPLETED: "[Conveyor] {{ job.type }} job {{ job.id }} completed",
    EventType.FAILED: "[Conveyor] {{ job.type }} job {{ job.id }} failed",
    EventType.RETRYING: "[Conveyor] {{ job.type }} job {{ job.id }} failed attempt "
    "{{ job.attempts }}; retrying",
    EventType.CANCELLED: "[Conveyor] {{ job.type }} job {{ job.id }} cancelled",
}
HEADLINES = {
    EventType.COMPLETED: "Job completed.",
    EventType.FAILED: "Job failed for good; it is in the dead letters.",
    EventType.RETRYING: "An attempt failed; the job will be retried.",
    EventType.CANCELLED: "Job cancelled.",
}
TEXT = """{{ headline }}

Job:      {{ job.id }}
Type:     {{ job.type }}
Status:   {{ job.status.value }}
Attempts: {{ job.attempts }} (max retries {{ job.max_retries }})
{% if job.error %}Error:    {{ job.error }}
{% endif %}{% if job.next_attempt_at %}Next try: {{ job.next_attempt_at.isoformat() }}
{% endif %}
Details: {{ job.url }}
Event {{ event_id }} at {{ occurred_at }}
"""
HTML = """<!doctype html>
<html><body style="font-family: sans-serif">
<p><strong>{{ headline }}</strong></p>
<table>
<tr><th align="left">Job</th><td><code>{{ job.id }}</code></td></tr>
<tr><th align="left">Type</th><td>{{ job.type }}</td></tr>
<tr><th align="left">Status</th><td>{{ job.status.value }}</td></tr>
<tr><th align="left">Attempts</th>
<td>{{ job.attempts }} (max retries {{ job.max_retries }})</td></tr>
{% if job.error %}<tr><th align="left">Error</th><td><pre>{{ job.error }}</pre></td></tr>{% endif %}
{% if job.next_attempt_at %}<tr><th align="left">Next try</th>
<td>{{ job.next_attempt_at.isoformat() }}</td></tr>{% endif %}
</table>
<p><a href="{{ job.url }}">View the job</a></p>
<p style="color: #888">Event {{ event_id }} at {{ occurred_at }}</p>
</body></html>
"""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class Templates:
    def __init__(self) -> None:
        plain = Environment(autoescape=False, undefined=StrictUndefined)  # noqa: S701 - text/plain
        html = Environment(autoescape=True, undefined=StrictUndefined)
        self._subjects = {k: plain.from_string(v) for k, v in SUBJECTS.items()}
        self._text = plain.from_string(TEXT)
        self._html = html.from_string(HTML)

    def render(self, event: JobEvent) -> RenderedEmail:
        values = {
            "job": event.job,
            "headline": HEADLINES[event.type],
            "event_id": event.id,
            "occurred_at": event.occurred_at.isoformat(),
        }
        subject = " ".join(self._subjects[event.type].render(values).split())  # one line
        return RenderedEmail(subject, self._text.render(values), self._html.render(values))


class EmailTransport(Protocol):
    async def send(self, to: list[str], mail: RenderedEmail, event_id: str) -> AttemptResult: ...


class DisabledTransport:
    async def send(self, to: list[str], mail: RenderedEmail, event_id: str) -> AttemptResult:
        return AttemptResult.permanent("email is disabled here (CONVEYOR_EMAIL_TRANSPORT=none)")


SMTP_TRANSIENT = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    aiosmtplib.SMTPConnectTimeoutError,
    OSError,
)


class SmtpTransport:
    """SMTP via aiosmtplib: plain, STARTTLS or implicit TLS, optional AUTH."""

    def __init__(self, settings: NotifierSettings) -> None:
        self._s = settings
        self._tls: ssl.SSLContext | None = None
        if settings.smtp_security != "none":
            self._tls = ssl.create_default_context(cafile=settings.smtp_ca_file)

    def message(self, to: list[str], mail: RenderedEmail, event_id: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._s.email_from
        msg["To"] = ", ".join(to)
        msg["Subject"] = mail.subject
        msg["Date"] = email.utils.formatdate(localtime=False)
        msg["Message-ID"] = email.utils.make_msgid(idstring=event_id.replace(".", "-"))
        msg["X-Conveyor-Event-Id"] = event_id
        msg.set_content(mail.text)
        msg.add_alternative(mail.html, subtype="html")
        return msg

    async def send(self, to: list[str], mail: RenderedEmail, event_id: str) -> AttemptResult:
        s = self._s
        try:
            await aiosmtplib.send(
                self.message(to, mail, event_id),
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                use_tls=s.smtp_security == "tls",
                start_tls=s.smtp_security == "starttls",
                tls_context=self._tls,
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if all(400 <= c < 500 for c in codes):
                return AttemptResult.retry(f"recipients refused: {detail}", codes[0])
            return AttemptResult.permanent(f"recipients refused: {detail}", codes[0])
        except aiosmtplib.SMTPResponseException as exc:
            error = f"SMTP {exc.code} {exc.message}"
            if 400 <= exc.code < 500:
                return AttemptResult.retry(error, exc.code)
            return AttemptResult.permanent(error, exc.code)
        except SMTP_TRANSIENT as exc:
            return AttemptResult.retry(f"{type(exc).__name__}: {exc}")
        except aiosmtplib.SMTPException as exc:  # e.g. STARTTLS not offered
            return AttemptResult.permanent(f"{type(exc).__name__}: {exc}")
        return AttemptResult.ok(250)  # DATA accepted (aiosmtplib raises on any other reply)


class MailtrapApiTransport:
    """Mailtrap's Email Sending API: ``POST /api/send`` with a Bearer token.

    Request ``{"from": {"email", "name"}, "to": [{"email"}], "subject", "text",
    "html", "category", "headers"}``; success is ``200 {"success": true,
    "message_ids": [...]}``, errors ``{"success": false, "errors": [...]}``.
    """

    def __init__(self, settings: NotifierSettings, client: httpx.AsyncClient) -> None:
        if settings.mailtrap_api_token is None:
            raise ValueError(
                "CONVEYOR_EMAIL_TRANSPORT=mailtrap-api needs CONVEYOR_MAILTRAP_API_TOKEN"
            )
        self._s = settings
        self._token = settings.mailtrap_api_token
        self._client = client

    def body(self, to: list[str], mail: RenderedEmail, event_id: str) -> dict[str, object]:
        name, address = email.utils.parseaddr(self._s.email_from)
        sender: dict[str, str] = {"email": address}
        if name:
            sender["name"] = name
        return {
            "from": sender,
            "to": [{"email": a} for a in to],
            "subject": mail.subject,
            "text": mail.text,
            "html": mail.html,
            "category": self._s.mailtrap_category,
            "headers": {"X-Conveyor-Event-Id": event_id},
        }

    async def send(self, to: list[str], mail: RenderedEmail, event_id: str) -> AttemptResult:
        try:
            resp = await self._client.post(
                self._s.mailtrap_api_url,
                json=self.body(to, mail, event_id),
                headers={"Authorization": f"Bearer {self._token.get_secret_value()}"},
                timeout=self._s.smtp_timeout_s,
            )
        except httpx.HTTPError as exc:
            return AttemptResult.retry(f"Mailtrap API: {type(exc).__name__}: {exc}")
        code = resp.status_code
        if code == 200:
            return AttemptResult.ok(code)
        try:
            errors = resp.json().get("errors")
        except ValueError:
            errors = None
        error = f"Mailtrap API HTTP {code}: {errors or resp.text[:300]}"
        if code == 429 or code >= 500:
            after = parse_retry_after(resp.headers.get("retry-after"), utcnow())
            return AttemptResult.retry(error, code, after)
        return AttemptResult.permanent(error, code)


def build_transport(settings: NotifierSettings, client: httpx.AsyncClient) -> EmailTransport:
    if settings.email_transport == "mailtrap-api":
        return MailtrapApiTransport(settings, client)
    if settings.email_transport == "smtp":
        return SmtpTransport(settings)
    return DisabledTransport()
