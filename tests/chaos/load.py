"""Submitting the mix like a careful client: every request carries its
``Idempotency-Key`` and is retried with it until accepted (connection errors,
5xx, 429 and ``idempotency_key_in_progress`` are retried; any other 4xx is a
refusal and is counted)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.chaos.mix import Request

RETRY_S = 0.5


@dataclass
class Submitter:
    client: httpx.AsyncClient
    deadline: float  # monotonic
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)  # status code or error name

    async def send(self, request: Request) -> bool:
        """Until accepted (``True``) or refused/out of time (``False``)."""
        while time.monotonic() < self.deadline:
            try:
                resp = await self.client.post(
                    request.path, json=request.json, headers={"Idempotency-Key": request.key}
                )
            except httpx.TransportError as exc:
                self.answers[type(exc).__name__] += 1
                await asyncio.sleep(RETRY_S)
                continue
            self.answers[str(resp.status_code)] += 1
            if resp.status_code in (200, 201, 202):
                body = resp.json()
                ids = body["ids"] if request.batch else [body["id"]]
                request.answers.append(ids)
                if not request.job_ids:
                    request.job_ids = ids
                return True
            retryable = resp.status_code >= 500 or resp.status_code == 429
            if resp.status_code == 409:
                retryable = resp.json()["error"]["code"] == "idempotency_key_in_progress"
            if not retryable:
                self.refused.append((request.key, resp.status_code, resp.text[:300]))
                return False
            await asyncio.sleep(RETRY_S)
        return False

    async def run(self, requests: list[Request], spread_s: float, concurrency: int) -> None:
        """Send every request, paced evenly over ``spread_s``; resend the marked ones."""
        queue: asyncio.Queue[tuple[int, Request]] = asyncio.Queue()
        for item in enumerate(requests):
            queue.put_nowait(item)
        interval = spread_s / max(1, len(requests))
        start = time.monotonic()

        async def worker() -> None:
            while not queue.empty():
                index, request = queue.get_nowait()
                due = start + index * interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if await self.send(request) and request.resend:
                    await self.send(request)
                    await self.send(request)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
