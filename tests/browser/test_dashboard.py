"""The dashboard at /ui in a real browser (Debian's chromium) against a real stack."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

import pytest
from playwright.async_api import Route, expect

from tests.browser.conftest import CHROMIUM, Dashboard

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (make browser)", allow_module_level=True)

pytestmark = pytest.mark.integration

# The README's screenshots: rewritten when CONVEYOR_DOCS_SCREENSHOTS=1 (so a plain
# test run leaves the working tree alone); otherwise written next to the artifacts.
DOCS = (
    Path(__file__).resolve().parents[2] / "docs"
    if os.environ.get("CONVEYOR_DOCS_SCREENSHOTS") == "1"
    else Path("/tmp/conveyor-browser-artifacts")
)
LIVE = 20_000  # ms: a change the page must show without a reload


@pytest.mark.timeout(90)
async def test_wrong_key_is_refused_then_a_good_key_is_kept_for_the_tab(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    await page.goto(dashboard.url)
    await page.get_by_label("Bearer key").fill("not-a-key")
    await page.get_by_role("button", name="Use this key").click()
    await expect(page.locator("#key-error")).to_contain_text("401")
    await expect(page.locator("#key-error")).to_contain_text("unauthorized")
    assert await page.evaluate("sessionStorage.length") == 0

    await dashboard.open()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    stored = await page.evaluate("sessionStorage.getItem('conveyor.apiKey')")
    assert stored is not None
    assert stored.startswith("test-admin-")
    await page.reload()  # same tab: the key survives
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")

    await page.get_by_role("button", name="Forget key").click()
    await expect(page.get_by_label("Bearer key")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


@pytest.mark.timeout(90)
async def test_a_job_submitted_from_the_form_completes_on_screen(dashboard: Dashboard) -> None:
    page = dashboard.page
    await dashboard.open("#/submit")
    await expect(page.locator("#f-type option[value=echo]")).to_have_count(1)
    await page.get_by_label("Type").select_option("echo")

    payload = page.get_by_label("Payload")
    await payload.fill('{"hello": ')  # client-side: not JSON
    await expect(page.locator("#err-payload")).to_contain_text("Not valid JSON")
    await expect(payload).to_have_attribute("aria-invalid", "true")
    await payload.fill('{"hello": "browser"}')
    await expect(page.locator("#err-payload")).to_have_text("")

    await page.get_by_label("Priority").fill("11")  # server-side: the API's 422, by the field
    await page.get_by_role("button", name="Submit job").click()
    await expect(page.locator("#err-priority")).to_contain_text("less than or equal to 10")
    await expect(page.locator(".answer.is-error")).to_contain_text("422")

    await page.get_by_label("Priority").fill("7")
    await page.get_by_role("button", name="Submit job").click()
    await expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f]{32}$"))
    await expect(page.locator("#job-status")).to_have_text("completed", timeout=LIVE)
    await expect(page.locator("#job-result")).to_contain_text('"hello": "browser"')
    await expect(page.locator("ol.timeline li")).to_have_count(1)
    job_id = page.url.rsplit("/", 1)[1]
    job = (await dashboard.stack.client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "completed"
    assert job["priority"] == 7


@pytest.mark.timeout(90)
async def test_a_running_sleep_job_is_cancelled_from_its_page(dashboard: Dashboard) -> None:
    page = dashboard.page
    job = await dashboard.submit_api("sleep", payload={"seconds": 30})
    await dashboard.stack.wait_job(job["id"], {"running"}, timeout=30)
    await dashboard.open(f"#/jobs/{job['id']}")
    await expect(page.locator("#job-status")).to_have_text("running", timeout=LIVE)

    await page.get_by_role("button", name="Cancel job").click()
    await expect(page.locator("#action-answer")).to_contain_text("→ 202 Accepted")
    await expect(page.locator("#job-status")).to_have_text("cancelled", timeout=LIVE)
    await expect(page.locator("ol.timeline li").last).to_contain_text("cancelled")
    # Finished now: the page offers retry and delete, not cancel.
    await expect(page.get_by_role("button", name="Cancel job")).to_be_disabled()
    await page.get_by_role("button", name="Retry as new job").click()
    await expect(page.locator("#action-answer")).to_contain_text("→ 201 Created")
    await expect(page.locator("#action-answer a")).to_have_count(1)


@pytest.mark.timeout(120)
async def test_a_dead_letter_is_redriven_then_purged(dashboard: Dashboard) -> None:
    page = dashboard.page
    job = await dashboard.submit_api("fail-absolute", max_retries=0)
    await dashboard.stack.wait_job(job["id"])
    await dashboard.open("#/dead-letters")
    row = page.locator(f'tr[data-job-id="{job["id"]}"]')
    await expect(row).to_have_count(1, timeout=LIVE)
    await expect(page.get_by_role("button", name="Redrive selected")).to_be_disabled()
    await row.get_by_role("checkbox").check()
    await page.get_by_role("button", name="Redrive selected (1)").click()
    await expect(page.locator("#dl-answer")).to_contain_text("Redriven: 1")
    await expect(page.locator("#dl-answer")).to_contain_text("→ 200 OK")

    # Redriven with a fresh budget it runs again; fail-absolute fails again and is
    # parked again: the page shows both without a reload.
    redriven = await dashboard.stack.wait_job(job["id"], {"failed"}, timeout=30)
    while len(redriven["attempts"]) < 2:
        redriven = await dashboard.stack.wait_job(job["id"], {"failed"}, timeout=30)
        await asyncio.sleep(0.1)
    await expect(row).to_have_count(1, timeout=LIVE)
    await expect(row).to_contain_text("2")  # attempts

    purge = page.get_by_role("button", name="Purge all dead letters")
    await expect(purge).to_be_disabled()
    await page.get_by_label("Type purge").fill("purg")
    await expect(purge).to_be_disabled()
    await page.get_by_label("Type purge").fill("purge")
    await purge.click()
    await expect(page.locator("#dl-answer")).to_contain_text('"purged_jobs": 1')
    await expect(page.get_by_text("No dead letters.")).to_be_visible()


@pytest.mark.timeout(120)
async def test_overview_counts_follow_jobs_submitted_behind_its_back(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    await dashboard.open("#/overview")
    await expect(page.locator("[data-count=total]")).to_have_text("0")
    for _ in range(3):
        await dashboard.submit_api("echo", payload={"n": 1})
    await expect(page.locator("[data-count=completed]")).to_have_text("3", timeout=LIVE)
    await expect(page.locator("[data-count=total]")).to_have_text("3")

    # A fuller picture for the README: a few waves of work, failures, a long job,
    # a scheduled one and a dead letter.
    running = await dashboard.submit_api("sleep", payload={"seconds": 30})
    await dashboard.submit_api("echo", delay_s=3600)
    for wave in range(3):
        for i in range(6 + 3 * wave):
            kind = ("email", "image-process", "report-gen", "echo")[i % 4]
            await dashboard.submit_api(kind, payload={"duration_s": 0.05})
        await dashboard.submit_api("fail-absolute", max_retries=0)
        await asyncio.sleep(1.5)
    await expect(page.locator("[data-count=scheduled]")).to_have_text("1", timeout=LIVE)
    await expect(page.locator("[data-count=running]")).to_have_text("1", timeout=LIVE)
    await expect(page.locator("[data-count=failed]")).to_have_text("3", timeout=LIVE)
    await expect(page.locator("[data-count=completed]")).to_have_text("30", timeout=LIVE)
    await expect(page.locator("[data-count=dead-letters]")).to_have_text("3", timeout=LIVE)
    await expect(page.locator(f'[data-job-id="{running["id"]}"]')).to_have_count(0)
    DOCS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)


@pytest.mark.timeout(90)
async def test_webhook_secret_is_shown_once_and_the_subscription_is_managed(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    await dashboard.open("#/webhooks")
    await expect(page.get_by_text("No subscriptions.")).to_be_visible()
    await page.get_by_label("URL").fill("not a url")
    await page.get_by_role("button", name="Create subscription").click()
    await expect(page.locator("#wh-err")).to_contain_text("url")

    await page.get_by_label("URL").fill("https://hooks.example.com/conveyor")
    await page.get_by_label("job.retrying").uncheck()
    await page.get_by_role("button", name="Create subscription").click()
    secret = page.locator("#webhook-secret")
    await expect(secret).to_have_text(re.compile(r"^whsec_"))
    first = await secret.text_content()
    row = page.locator("tr[data-webhook-id]")
    await expect(row).to_contain_text("job.completed, job.failed, job.cancelled")
    await expect(row).to_contain_text("enabled")

    await row.get_by_role("button", name="Disable").click()
    await expect(row).to_contain_text("disabled")
    await expect(page.locator("#webhook-secret")).to_have_count(0)  # shown only once
    await row.get_by_role("button", name="Rotate secret").click()
    await expect(secret).not_to_have_text(first or "")
    await expect(secret).to_have_text(re.compile(r"^whsec_"))
    await row.get_by_role("button", name="Delete", exact=True).click()
    await row.get_by_role("button", name="Yes, delete").click()
    await expect(page.get_by_text("No subscriptions.")).to_be_visible()


@pytest.mark.timeout(90)
async def test_the_stream_client_parses_events_and_resumes_with_last_event_id(
    dashboard: Dashboard,
) -> None:
    """The page reads /v1/events/stream with fetch(): here the stream is played by
    Playwright, so the test does not depend on the server's stream."""
    page = dashboard.page
    job = await dashboard.submit_api("sleep", payload={"seconds": 30})
    await dashboard.stack.wait_job(job["id"], {"running"}, timeout=30)
    seen: list[dict[str, str]] = []
    progress = {
        "kind": "job.progress",
        "job_id": job["id"],
        "job_type": "sleep",
        "status": "running",
        "attempt": 1,
        "at": "2030-01-01T00:00:00Z",
        "error": None,
        "progress": {"fraction": 0.5, "message": "halfway"},
    }

    text = json.dumps(progress)
    cut = text.index(', "job_id"') + 1  # data lines are joined with a newline: JSON whitespace
    head, tail = text[:cut], text[cut:]

    async def stream(route: Route) -> None:
        seen.append(dict(route.request.headers))
        body = (
            ": ping\n\n"
            "id: 1700000000-1\r\nevent: job.progress\r\n"  # CRLF lines, data split in two
            f"data: {head}\ndata:{tail}\n\n"
            if len(seen) == 1
            else 'event: resync\ndata: {"reason": "test"}\n\n'
        )
        await route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=body)

    await page.route("**/v1/events/stream", stream)
    await dashboard.open(f"#/jobs/{job['id']}")
    await expect(page.locator("#job-progress")).to_contain_text("Progress 50 % — halfway")
    deadline = time.monotonic() + 10
    while len(seen) < 2:  # the stream ended: the page reconnects
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.05)
    assert "last-event-id" not in seen[0]
    assert seen[1]["last-event-id"] == "1700000000-1"
    assert seen[0]["authorization"].startswith("Bearer test-admin-")


@pytest.mark.timeout(120)
async def test_every_page_fits_a_390px_phone(dashboard: Dashboard) -> None:
    page = dashboard.page
    await page.set_viewport_size({"width": 390, "height": 844})
    done = await dashboard.submit_api("echo", payload={"a": "x" * 300})
    failed = await dashboard.submit_api("fail-absolute", max_retries=0)
    await dashboard.stack.wait_job(done["id"])
    await dashboard.stack.wait_job(failed["id"])
    await dashboard.open("#/overview")
    routes = {
        "#/overview": "Overview",
        "#/jobs": "Jobs",
        f"#/jobs/{failed['id']}": "Job",
        "#/submit": "Submit a job",
        "#/dead-letters": "Dead letters",
        "#/webhooks": "Webhooks",
        "#/schedules": "Schedules",
    }
    for route, title in routes.items():
        await dashboard.go(route)
        await expect(page.get_by_role("heading", level=1)).to_contain_text(title)
        await expect(page.locator("main .table-wrap, main form").first).to_be_visible()
        widths = await page.evaluate(
            "({body: document.body.scrollWidth, doc: document.documentElement.scrollWidth,"
            " view: document.documentElement.clientWidth})"
        )
        assert widths["body"] <= widths["view"], (route, widths)
        assert widths["doc"] <= widths["view"], (route, widths)
    await dashboard.go("#/overview")
    await expect(page.locator("[data-count=failed]")).to_have_text("1")
    await page.screenshot(path=str(DOCS / "dashboard-mobile.png"), full_page=True)


@pytest.mark.timeout(90)
async def test_without_the_stream_the_page_polls(dashboard: Dashboard) -> None:
    page = dashboard.page
    await page.route("**/v1/events/stream", lambda route: route.fulfill(status=404, body="{}"))
    await dashboard.open("#/overview")
    await expect(page.locator("#live")).to_have_text("Polling every 2 s")
    await expect(page.locator("[data-count=total]")).to_have_text("0")
    await dashboard.submit_api("echo")
    await expect(page.locator("[data-count=completed]")).to_have_text("1", timeout=LIVE)


@pytest.mark.timeout(90)
async def test_jobs_are_filtered_paged_and_follow_the_stream(dashboard: Dashboard) -> None:
    page = dashboard.page
    resp = await dashboard.stack.client.post(
        "/v1/jobs/batch", json={"jobs": [{"type": "echo", "payload": {"i": i}} for i in range(30)]}
    )
    assert resp.status_code == 202, resp.text
    failed = await dashboard.submit_api("fail-absolute", max_retries=0)
    await dashboard.stack.wait_job(failed["id"])
    await dashboard.open("#/jobs")
    rows = page.locator("tr[data-job-id]")
    await expect(rows).to_have_count(25)
    await page.get_by_role("button", name="Older →").click()
    await expect(rows).to_have_count(6)
    await expect(page.get_by_text("Page 2")).to_be_visible()
    await page.get_by_role("button", name="← Newer").click()
    await expect(rows).to_have_count(25)

    await page.get_by_label("Status").select_option("failed")
    await expect(page).to_have_url(re.compile(r"#/jobs\?status=failed$"))
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-job-id", failed["id"])

    await page.get_by_label("Status").select_option("")
    await expect(rows).to_have_count(25)
    late = await dashboard.submit_api("sleep", payload={"seconds": 0.5})
    row = page.locator(f'tr[data-job-id="{late["id"]}"]')
    await expect(row).to_have_count(1, timeout=LIVE)  # appears without a reload
    await expect(row.locator(".badge")).to_have_text("completed", timeout=LIVE)

    await page.get_by_label("Find by id").fill("nope")
    await page.get_by_role("button", name="Open").click()
    await expect(page.get_by_text("No job with id nope.")).to_be_visible()
    await page.get_by_label("Find by id").fill(failed["id"])
    await page.get_by_role("button", name="Open").click()
    await expect(page.locator("#job-status")).to_have_text("failed")
    await expect(page.locator("ol.timeline")).to_contain_text("fail-absolute always fails")
