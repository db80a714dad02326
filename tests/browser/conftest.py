"""Real-browser fixtures: Debian's chromium driven by Playwright against a real stack.

Playwright's own browser download is not used (``executable_path``). On a failed
test the page is saved to ``/tmp/conveyor-browser-artifacts/<test>.png`` (the
path is printed). Every test also fails on an uncaught page error or a
Content-Security-Policy violation.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import ConsoleMessage, Page, async_playwright, expect

from tests.stack import ADMIN_KEY, Stack

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path("/tmp/conveyor-browser-artifacts")
DESKTOP = {"width": 1280, "height": 900}


@dataclass
class Dashboard:
    """A page on the stack's ``/ui`` plus the stack itself."""

    stack: Stack
    page: Page
    problems: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.stack.api_url is not None
        return f"{self.stack.api_url}/ui/"

    async def open(self, route: str = "#/overview", key: str = ADMIN_KEY) -> None:
        """Open the dashboard at ``route`` and answer the key prompt."""
        await self.page.goto(self.url + route)
        await self.page.get_by_label("Bearer key").fill(key)
        await self.page.get_by_role("button", name="Use this key").click()
        await expect(self.page.locator("#keyinfo")).to_contain_text("Key …", timeout=10_000)

    async def go(self, route: str) -> None:
        """Navigate inside the page (hash route: no reload, the stream stays open)."""
        await self.page.evaluate("route => { location.hash = route }", route)

    async def submit_api(self, type_: str = "echo", **body: Any) -> dict[str, Any]:
        return await self.stack.submit(type_, **body)


@pytest.fixture
async def dashboard(stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[Dashboard]:
    """The API, a worker and chromium, started side by side; a 1280 px page."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (make browser installs Debian's chromium)")
    async with async_playwright() as p:
        browser, _, _ = await asyncio.gather(
            p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"]),
            stack.start_api(),
            # A short grace: a test's leftover 30 s sleep job must not hold the teardown.
            stack.start_worker(worker_shutdown_grace_s=1),
        )
        context = await browser.new_context(
            viewport=DESKTOP, locale="en-GB", timezone_id="Europe/Paris"
        )
        page = await context.new_page()
        dash = Dashboard(stack=stack, page=page)
        page.on("pageerror", lambda exc: dash.problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: _csp_violation(dash, msg))
        yield dash
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', request.node.name)}.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"\nbrowser screenshot: {shot}")
        await browser.close()
    assert not dash.problems, dash.problems


def _csp_violation(dash: Dashboard, msg: ConsoleMessage) -> None:
    if msg.type == "error" and "Content Security Policy" in msg.text:
        dash.problems.append(f"console: {msg.text}")
