"""API keys: on by default, hashed at rest, scoped, revocable, expiring, rate limited."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from pymongo import AsyncMongoClient

from conveyor_kernel.model import utcnow
from conveyor_kernel.mongo import Document
from tests.stack import Stack

pytestmark = pytest.mark.integration


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_key(stack: Stack, *scopes: str, **extra: object) -> dict[str, object]:
    resp = await stack.client.post(
        "/v1/keys", json={"name": f"test {' '.join(scopes)}", "scopes": list(scopes), **extra}
    )
    assert resp.status_code == 201, resp.text
    created: dict[str, object] = resp.json()
    return created


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/stats"),
        ("DELETE", "/v1/dead-letters?confirm=true"),
        ("POST", "/v1/webhooks"),
        ("GET", "/v1/keys"),
        ("GET", "/metrics"),
    ],
)
async def test_no_key_is_401_json(stack: Stack, method: str, path: str) -> None:
    await stack.start_api()
    async with httpx.AsyncClient(base_url=stack.api_url or "") as anonymous:
        for headers in (
            {},
            bearer("cvk_0123456789abcdef_" + "x" * 43),
            {"Authorization": "Basic x"},
        ):
            resp = await anonymous.request(method, path, headers=headers, json={"type": "echo"})
            assert resp.status_code == 401, (path, resp.text)
            assert resp.json()["error"]["code"] == "unauthorized"
            assert resp.headers["www-authenticate"] == "Bearer"
        for open_path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
            assert (await anonymous.get(open_path)).status_code == 200, open_path
    # a request that was refused left nothing behind
    assert (await stack.client.get("/v1/stats")).json()["total"] == 0


async def test_scopes_are_enforced_with_403(stack: Stack) -> None:
    await stack.start_api()
    reader = await new_key(stack, "jobs:read")
    writer = await new_key(stack, "jobs:write")
    async with httpx.AsyncClient(base_url=stack.api_url or "") as http:
        denied = await http.post(
            "/v1/jobs", json={"type": "echo"}, headers=bearer(str(reader["key"]))
        )
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "forbidden"
        assert denied.json()["error"]["required_scope"] == "jobs:write"
        made = await http.post(
            "/v1/jobs", json={"type": "echo"}, headers=bearer(str(writer["key"]))
        )
        assert made.status_code == 202, made.text
        job_id = made.json()["id"]
        seen = await http.get(f"/v1/jobs/{job_id}", headers=bearer(str(reader["key"])))
        assert seen.status_code == 200
        assert (await http.get("/v1/stats", headers=bearer(str(reader["key"])))).status_code == 200
        assert (await http.get("/metrics", headers=bearer(str(reader["key"])))).status_code == 200
        for admin_only in ("/v1/keys", "/v1/dead-letters", "/v1/webhooks"):
            resp = await http.get(admin_only, headers=bearer(str(writer["key"])))
            assert resp.status_code == 403, admin_only
        gone = await http.delete(f"/v1/jobs/{job_id}", headers=bearer(str(writer["key"])))
        assert gone.status_code == 403  # deleting is admin


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(
    stack: Stack, mongo: AsyncMongoClient[Document]
) -> None:
    await stack.start_api()
    created = await new_key(stack, "jobs:read", "jobs:write")
    key = str(created["key"])
    assert key.startswith(f"cvk_{created['id']}_")
    assert len(key) >= 4 + 16 + 1 + 43  # 32 random bytes, base64url
    listed = (await stack.client.get("/v1/keys")).json()
    (mine,) = [k for k in listed if k["id"] == created["id"]]
    assert "key" not in mine
    assert "hash" not in mine
    assert mine["scopes"] == ["jobs:read", "jobs:write"]
    (doc,) = await mongo[stack.db_name]["api_keys"].find({}).to_list()
    assert key not in str(doc)
    assert len(doc["hash"]) == 64
    async with httpx.AsyncClient(base_url=stack.api_url or "") as http:
        assert (await http.get("/v1/jobs", headers=bearer(key))).status_code == 200
    for _ in range(50):  # last_used_at is written in the background
        used = (await stack.client.get("/v1/keys")).json()
        if used[0]["last_used_at"] is not None:
            break
        await asyncio.sleep(0.1)
    assert used[0]["last_used_at"] is not None


async def test_revoked_and_expired_keys_are_401(stack: Stack) -> None:
    await stack.start_api()
    revoked = await new_key(stack, "jobs:read")
    soon = (utcnow() + timedelta(seconds=2)).isoformat()
    expiring = await new_key(stack, "jobs:read", expires_at=soon)
    async with httpx.AsyncClient(base_url=stack.api_url or "") as http:
        assert (await http.get("/v1/jobs", headers=bearer(str(revoked["key"])))).status_code == 200
        assert (await stack.client.delete(f"/v1/keys/{revoked['id']}")).status_code == 204
        assert (await http.get("/v1/jobs", headers=bearer(str(revoked["key"])))).status_code == 401
        assert (await stack.client.delete(f"/v1/keys/{revoked['id']}")).status_code == 404
        assert (await http.get("/v1/jobs", headers=bearer(str(expiring["key"])))).status_code == 200
        await asyncio.sleep(2.2)
        late = await http.get("/v1/jobs", headers=bearer(str(expiring["key"])))
        assert late.status_code == 401
        assert "expired" in late.json()["error"]["message"]
    past = await stack.client.post(
        "/v1/keys", json={"name": "x", "scopes": ["admin"], "expires_at": "2001-01-01T00:00:00Z"}
    )
    assert past.status_code == 422


async def test_over_the_rate_is_429_with_retry_after(stack: Stack) -> None:
    await stack.start_api()
    limited = await new_key(stack, "jobs:read", rate_per_s=0.5, burst=2)
    async with httpx.AsyncClient(base_url=stack.api_url or "") as http:
        codes = [
            (await http.get("/v1/job-types", headers=bearer(str(limited["key"])))).status_code
            for _ in range(2)
        ]
        assert codes == [200, 200]
        over = await http.get("/v1/job-types", headers=bearer(str(limited["key"])))
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "rate_limited"
    assert int(over.headers["retry-after"]) >= 1
    assert over.headers["ratelimit-limit"] == "2"
    assert over.headers["ratelimit-remaining"] == "0"
    assert int(over.headers["ratelimit-reset"]) >= 1
    # another key has a bucket of its own
    assert (await stack.client.get("/v1/job-types")).status_code == 200
