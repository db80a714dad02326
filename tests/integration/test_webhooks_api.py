"""``/v1/webhooks`` and notify validation (no notifier needed)."""

from __future__ import annotations

import pytest
from pymongo import AsyncMongoClient

from conveyor_kernel.mongo import Document
from tests.stack import Stack

pytestmark = pytest.mark.integration


async def test_webhook_subscription_crud(stack: Stack) -> None:
    client = await stack.start_api()
    resp = await client.post("/v1/webhooks", json={"url": "https://example.com/hook"})
    assert resp.status_code == 201
    created = resp.json()
    assert created["events"] == ["job.completed", "job.failed", "job.retrying", "job.cancelled"]
    assert created["enabled"] is True
    listed = (await client.get("/v1/webhooks")).json()
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]
    patched = await client.patch(
        f"/v1/webhooks/{created['id']}", json={"events": ["job.failed"], "enabled": False}
    )
    assert patched.json()["events"] == ["job.failed"]
    assert patched.json()["enabled"] is False
    assert (await client.delete(f"/v1/webhooks/{created['id']}")).status_code == 204
    missing = await client.get(f"/v1/webhooks/{created['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "webhook_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/x"},
        {"url": "https://user:pw@example.com/x"},
        {"url": "https://example.com/x", "events": ["job.exploded"]},
        {"url": "https://example.com/x", "events": []},
    ],
)
async def test_bad_subscriptions_are_422(stack: Stack, body: dict[str, object]) -> None:
    client = await stack.start_api()
    resp = await client.post("/v1/webhooks", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_error"


async def test_job_webhook_needs_a_signing_secret(stack: Stack) -> None:
    client = await stack.start_api()
    resp = await client.post(
        "/v1/jobs", json={"type": "echo", "notify": {"webhook": {"url": "https://example.com"}}}
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "webhooks_not_configured"


async def test_bad_email_is_422(stack: Stack) -> None:
    client = await stack.start_api()
    resp = await client.post(
        "/v1/jobs", json={"type": "echo", "notify": {"email": {"to": ["not-an-address"]}}}
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "validation_error"


async def test_deliveries_of_unknown_job_is_404(stack: Stack) -> None:
    client = await stack.start_api()
    resp = await client.get("/v1/jobs/nope/deliveries")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "job_not_found"


@pytest.mark.parametrize("field", ["url", "events", "enabled"])
async def test_patch_refuses_nulls(stack: Stack, field: str) -> None:
    client = await stack.start_api()
    created = (await client.post("/v1/webhooks", json={"url": "https://example.com/h"})).json()
    resp = await client.patch(f"/v1/webhooks/{created['id']}", json={field: None})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "validation_error"
    unchanged = (await client.get(f"/v1/webhooks/{created['id']}")).json()
    assert unchanged["url"] == "https://example.com/h"
    assert unchanged["enabled"] is True


async def test_subscriptions_are_capped(stack: Stack) -> None:
    await stack.start_api(max_subscriptions=2)
    for i in range(2):
        resp = await stack.client.post("/v1/webhooks", json={"url": f"https://example.com/{i}"})
        assert resp.status_code == 201, resp.text
    over = await stack.client.post("/v1/webhooks", json={"url": "https://example.com/2"})
    assert over.status_code == 409
    assert over.json()["error"]["code"] == "too_many_subscriptions"
    assert len((await stack.client.get("/v1/webhooks")).json()) == 2


async def test_signing_secrets_are_sealed_at_rest(
    stack: Stack, mongo: AsyncMongoClient[Document]
) -> None:
    await stack.start_api()
    created = (
        await stack.client.post("/v1/webhooks", json={"url": "https://example.com/sealed"})
    ).json()
    plain = created["secret"]
    rotated = (await stack.client.post(f"/v1/webhooks/{created['id']}/rotate-secret")).json()
    (doc,) = await mongo[stack.db_name]["webhooks"].find({}).to_list()
    assert doc["secret"].startswith("fernet:")
    assert rotated["secret"] not in str(doc)
    assert plain not in str(doc)  # the previous secret is sealed too
    assert doc["previous_secrets"][0]["secret"].startswith("fernet:")
