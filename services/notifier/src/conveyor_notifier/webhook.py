"""Webhooks per the Standard Webhooks spec: signed, pinned to checked addresses.

Headers: ``webhook-id`` (the event id, the same on every retry),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``:
``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` for each secret, space
separated (several while a secret is being rotated). 2xx is success; a timeout,
a connection error, 408, 429 or 5xx is retried (``Retry-After`` honoured); 410
retires the endpoint; anything else is permanent.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx

from conveyor_kernel.model import utcnow
from conveyor_notifier.outcome import AttemptResult, parse_retry_after
from conveyor_notifier.ssrf import DestinationRefusedError, Network, ResolutionError, resolve

if TYPE_CHECKING:
    from opentelemetry.instrumentation.httpx import RequestInfo
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

USER_AGENT = "Conveyor-Webhooks/1"
RETRYABLE_STATUS = frozenset({408, 429})
FOLLOWED_REDIRECTS = frozenset({307, 308})  # method- and body-preserving


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_") + "==")


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value."""
    content = f"{msg_id}.{timestamp}.{body}".encode()
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_key(s), content, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def classify(response: httpx.Response) -> AttemptResult:
    code = response.status_code
    if 200 <= code < 300:
        return AttemptResult.ok(code)
    if code == 410:
        return AttemptResult(
            delivered=False, status_code=code, error="410 Gone: endpoint retired", gone=True
        )
    if code in RETRYABLE_STATUS or code >= 500:
        after = parse_retry_after(response.headers.get("retry-after"), utcnow())
        return AttemptResult.retry(f"HTTP {code}", code, after)
    if 300 <= code < 400:
        where = response.headers.get("location", "?")
        return AttemptResult.permanent(f"HTTP {code} redirect to {where} not followed", code)
    return AttemptResult.permanent(f"HTTP {code}", code)


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


class WebhookSender:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        allowed: Sequence[Network],
        timeout_s: float,
        max_redirects: int,
    ) -> None:
        self._client = client
        self._allowed = list(allowed)
        self._timeout = timeout_s
        self._max_redirects = max_redirects

    async def send(self, url: str, msg_id: str, body: str, secrets: Sequence[str]) -> AttemptResult:
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secrets, msg_id, timestamp, body),
        }
        try:
            current = httpx.URL(url)
        except httpx.InvalidURL as exc:
            return AttemptResult.permanent(f"invalid URL: {exc}")
        try:
            # One deadline for the whole attempt: DNS, every hop, the response.
            async with asyncio.timeout(self._timeout):
                return await self._hops(current, body, headers)
        except TimeoutError:
            return AttemptResult.retry(f"timed out after {self._timeout:g} s")

    async def _hops(self, current: httpx.URL, body: str, headers: dict[str, str]) -> AttemptResult:
        for hop in range(self._max_redirects + 1):
            try:
                target = await resolve(current, self._allowed)
            except DestinationRefusedError as exc:
                return AttemptResult.permanent(f"refused: {exc}")
            except ResolutionError as exc:
                return AttemptResult.retry(str(exc))
            try:
                # httpx times each read; send()'s deadline bounds the whole exchange
                # (a trickling receiver cannot hold a delivery slot past the timeout).
                async with (
                    self._client.stream(
                        "POST",
                        target.pinned_url(),
                        content=body.encode(),
                        headers={**headers, "host": target.host_header()},
                        extensions=target.request_extensions(),
                        timeout=self._timeout,
                    ) as response,
                ):
                    location = response.headers.get("location")
                    if (
                        response.status_code in FOLLOWED_REDIRECTS
                        and location
                        and hop < self._max_redirects
                    ):
                        try:
                            nxt = current.join(location)
                        except httpx.InvalidURL as exc:
                            return AttemptResult.permanent(f"invalid redirect: {exc}")
                        if origin(nxt) != origin(current):
                            # The signed request stays with its origin: no https -> http
                            # downgrade, no other host or port.
                            return AttemptResult.permanent(
                                f"HTTP {response.status_code} redirect to another origin "
                                f"({nxt.scheme}://{nxt.host}) not followed",
                                response.status_code,
                            )
                        current = nxt
                        continue
                    return classify(response)
            except httpx.TimeoutException:
                return AttemptResult.retry(f"timed out after {self._timeout:g} s")
            except httpx.InvalidURL as exc:
                return AttemptResult.permanent(f"invalid URL: {exc}")
            except httpx.HTTPError as exc:
                return AttemptResult.retry(f"{type(exc).__name__}: {exc}")
        return AttemptResult.permanent(f"more than {self._max_redirects} redirects")


def instrument_http(client: httpx.AsyncClient, provider: TracerProvider) -> None:
    """Client spans for outgoing requests, which then carry ``traceparent``. The
    span keeps scheme, host and path only: a webhook URL's query may hold a token."""

    async def redact(span: Span, request: RequestInfo) -> None:
        if span.is_recording():
            url = httpx.URL(str(request.url)).copy_with(query=None, fragment=None)
            span.set_attributes({"url.full": str(url), "http.url": str(url)})

    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor  # noqa: PLC0415

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider, request_hook=redact)
