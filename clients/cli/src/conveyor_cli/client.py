"""A thin async wrapper of Conveyor's REST API with one error taxonomy.

Every failure the commands can meet is a :class:`ConveyorError` carrying the
process exit code it maps to: 2 bad input (any 4xx but the ones below), 3
authentication or permission (401/403), 4 not found (404), 5 API unavailable
(connection error, timeout, 5xx, 429 after retries).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_UNAVAILABLE = 5
EXIT_INTERRUPTED = 130
CLOSE_TIMEOUT_S = 2.0

RATE_LIMIT_RETRIES = 3
RATE_LIMIT_MAX_WAIT_S = 10.0
USER_AGENT = "conveyor-cli/0.1"


class ConveyorError(Exception):
    """A failure to report and exit with; ``body`` is the API's error object if any."""

    exit_code = EXIT_USAGE

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.body: dict[str, Any] = dict(body or {})

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code or "cli_error", "message": self.message}
        error |= {k: v for k, v in self.body.items() if k not in {"code", "message"}}
        return {"error": error, "status": self.status, "exit_code": self.exit_code}


class BadInputError(ConveyorError):
    exit_code = EXIT_USAGE


class AuthError(ConveyorError):
    exit_code = EXIT_AUTH


class NotFoundError(ConveyorError):
    exit_code = EXIT_NOT_FOUND


class UnavailableError(ConveyorError):
    exit_code = EXIT_UNAVAILABLE


def error_for(response: httpx.Response) -> ConveyorError:
    """The :class:`ConveyorError` of an error answer (reads the ``{"error": {...}}`` body)."""
    status = response.status_code
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        body = parsed["error"]
    code = str(body.get("code") or f"http_{status}")
    message = str(body.get("message") or response.reason_phrase or f"HTTP {status}")
    cls: type[ConveyorError]
    if status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFoundError
    elif status == 429 or status >= 500:
        cls = UnavailableError
    else:
        cls = BadInputError
    return cls(message, status=status, code=code, body=body)


def transport_error(exc: httpx.HTTPError, url: str) -> UnavailableError:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    detail = str(exc) or type(exc).__name__
    return UnavailableError(
        f"the Conveyor API at {url} is {kind}: {detail}", code="api_unavailable"
    )


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str | None
    timeout: float
    json: bool


class Client:
    """One ``httpx.AsyncClient`` with the key and the base URL; use ``async with``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        headers = {"User-Agent": USER_AGENT}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.http = httpx.AsyncClient(
            base_url=settings.url.rstrip("/"), headers=headers, timeout=settings.timeout
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Bounded: an open event stream must not hold up an exit (Ctrl-C included).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The answer if it is a 2xx; else raises the matching :class:`ConveyorError`.

        A ``429`` is retried (up to 3 times) after its ``Retry-After`` if that is short.
        """
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                response = await self.http.request(
                    method, path, json=json, params=clean, headers=headers
                )
            except httpx.HTTPError as exc:
                raise transport_error(exc, self.settings.url) from exc
            if response.status_code == 429 and attempt < RATE_LIMIT_RETRIES:
                wait = _retry_after(response)
                if wait is not None and wait <= RATE_LIMIT_MAX_WAIT_S:
                    await asyncio.sleep(wait)
                    continue
            if response.is_success:
                return response
            raise error_for(response)
        raise AssertionError("unreachable")

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return (await self.request("GET", path, params=params)).json()

    # Jobs
    async def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return (await self.request("POST", "/v1/jobs", json=body, headers=headers)).json()

    async def submit_batch(self, jobs: list[dict[str, Any]], idempotency_key: str) -> Any:
        headers = {"Idempotency-Key": idempotency_key}
        response = await self.request(
            "POST", "/v1/jobs/batch", json={"jobs": jobs}, headers=headers
        )
        return response.json()

    async def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.get_json(f"/v1/jobs/{_seg(job_id)}")
        return result

    async def jobs(self, **params: Any) -> Any:
        return await self.get_json("/v1/jobs", params)

    async def cancel(self, job_id: str) -> tuple[int, Any]:
        response = await self.request("POST", f"/v1/jobs/{_seg(job_id)}/cancel")
        return response.status_code, response.json()

    async def retry(self, job_id: str) -> Any:
        return (await self.request("POST", f"/v1/jobs/{_seg(job_id)}/retry")).json()

    async def delete(self, job_id: str) -> None:
        await self.request("DELETE", f"/v1/jobs/{_seg(job_id)}")

    async def stats(self) -> Any:
        return await self.get_json("/v1/stats")

    # Dead letters
    async def dead_letters(self, limit: int, cursor: str | None) -> Any:
        return await self.get_json("/v1/dead-letters", {"limit": limit, "cursor": cursor})

    async def redrive(self, ids: list[str] | None) -> Any:
        body: dict[str, Any] = {"all": True} if ids is None else {"ids": ids}
        return (await self.request("POST", "/v1/dead-letters/redrive", json=body)).json()

    async def purge_dead_letters(self) -> Any:
        response = await self.request("DELETE", "/v1/dead-letters", params={"confirm": "true"})
        return response.json()

    # Webhooks
    async def webhooks(self) -> Any:
        return await self.get_json("/v1/webhooks")

    async def create_webhook(self, body: dict[str, Any]) -> Any:
        return (await self.request("POST", "/v1/webhooks", json=body)).json()

    async def delete_webhook(self, sub_id: str) -> None:
        await self.request("DELETE", f"/v1/webhooks/{_seg(sub_id)}")

    async def rotate_webhook(self, sub_id: str, previous_valid_s: int) -> Any:
        response = await self.request(
            "POST",
            f"/v1/webhooks/{_seg(sub_id)}/rotate-secret",
            params={"previous_valid_s": previous_valid_s},
        )
        return response.json()


def _seg(value: str) -> str:
    """``value`` as one path segment (an id with ``/`` or ``?`` stays inside it)."""
    return quote(value, safe="")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None
