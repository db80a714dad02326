"""CORS is off unless origins are listed; a foreign Host (DNS rebinding) is refused."""

from __future__ import annotations

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration

PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


async def test_a_rebound_host_name_is_refused_with_json(stack: Stack) -> None:
    client = await stack.start_api()  # binds 127.0.0.1: localhost names only
    evil = await client.get("/v1/jobs", headers={"Host": "attacker.example"})
    assert evil.status_code == 400
    assert evil.json()["error"]["code"] == "invalid_host"
    for host in ("localhost", "127.0.0.1"):
        assert (await client.get("/v1/jobs", headers={"Host": host})).status_code == 200


async def test_cors_is_off_by_default(stack: Stack) -> None:
    client = await stack.start_api()
    headers = {**PREFLIGHT, "Origin": "https://ops.example.com"}
    resp = await client.options("/v1/jobs", headers=headers)
    assert "access-control-allow-origin" not in resp.headers
    get = await client.get("/v1/jobs", headers={"Origin": "https://ops.example.com"})
    assert "access-control-allow-origin" not in get.headers


async def test_cors_admits_only_the_listed_origins(stack: Stack) -> None:
    client = await stack.start_api(cors_origins="https://ops.example.com")
    ok = await client.options(
        "/v1/jobs", headers={**PREFLIGHT, "Origin": "https://ops.example.com"}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://ops.example.com"
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    other = await client.options(
        "/v1/jobs", headers={**PREFLIGHT, "Origin": "https://evil.example"}
    )
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"
