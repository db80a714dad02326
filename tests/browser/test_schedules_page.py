"""The dashboard's schedules page in a real browser against a real stack."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.conftest import CHROMIUM, Dashboard

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (make browser)", allow_module_level=True)

pytestmark = pytest.mark.integration


@pytest.mark.timeout(90)
async def test_a_schedule_is_created_checked_disabled_and_deleted(dashboard: Dashboard) -> None:
    page = dashboard.page
    await dashboard.open("#/schedules")
    await expect(page.get_by_text("No schedules.")).to_be_visible()
    await expect(page.get_by_label("Job type")).to_contain_text("echo")

    await page.get_by_label("Name", exact=True).fill("every minute")
    await page.get_by_label("Cron").fill("61 * * * *")
    await page.get_by_role("button", name="Create schedule").click()
    await expect(page.locator("#se-cron")).not_to_be_empty()  # the API's 422, by the field
    await page.get_by_label("Payload").fill("{not json")
    await page.get_by_role("button", name="Create schedule").click()
    await expect(page.locator("#se-payload")).to_contain_text("Not JSON")

    await page.get_by_label("Cron").fill("* * * * *")
    await page.get_by_label("Time zone").fill("Europe/Berlin")
    await page.get_by_label("Job type").select_option("echo")
    await page.get_by_label("Payload").fill('{"from": "ui"}')
    await page.get_by_role("button", name="Create schedule").click()
    row = page.locator("tr[data-schedule-id]")
    await expect(row).to_contain_text("every minute")
    await expect(row).to_contain_text("Europe/Berlin")
    await expect(row).to_contain_text("enabled")
    await expect(row).to_contain_text("never")
    schedule_id = await row.get_attribute("data-schedule-id")
    stored = (await dashboard.stack.client.get(f"/v1/schedules/{schedule_id}")).json()
    assert stored["job"]["payload"] == {"from": "ui"}
    assert stored["cron"] == "* * * * *"

    await row.get_by_role("button", name="Disable").click()
    await expect(row).to_contain_text("disabled")
    stored = (await dashboard.stack.client.get(f"/v1/schedules/{schedule_id}")).json()
    assert stored["enabled"] is False

    await row.get_by_role("link", name="Jobs").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Jobs")
    await expect(page.locator("#f-schedule")).to_contain_text(schedule_id or "?")
    await expect(page.get_by_text("No jobs match these filters.")).to_be_visible()

    await dashboard.go("#/schedules")
    await row.get_by_role("button", name="Delete", exact=True).click()
    await row.get_by_role("button", name="Yes, delete").click()
    await expect(page.get_by_text("No schedules.")).to_be_visible()
    assert (await dashboard.stack.client.get(f"/v1/schedules/{schedule_id}")).status_code == 404
