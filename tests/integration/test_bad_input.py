"""Bad input is a 4xx with a JSON body, decided before anything is stored or run
(the failing requests of issue 11, kept as regression tests)."""

from __future__ import annotations

import asyncio

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


RAW_BODIES = {
    "int64 overflow": '{"type": "echo", "payload": {"n": 9223372036854775808}}',
    "300 nested arrays": '{"type": "echo", "payload": {"x": ' + deep(300) + "}}",
    "DBRef-shaped": '{"type": "echo", "payload": {"x": {"$ref": "jobs", "$id": "1"}}}',
    "dotted key": '{"type": "echo", "payload": {"a.b": 1}}',
    "NUL in a key": '{"type": "echo", "payload": {"k\\u0000": 1}}',
    "lone surrogate": '{"type": "echo", "payload": {"s": "\\ud800"}}',
    "NaN": '{"type": "echo", "payload": {"x": NaN}}',
}


async def assert_nothing_stored(stack: Stack) -> None:
    stats = (await stack.client.get("/v1/stats")).json()
    assert stats["total"] == 0, stats
    assert stats["queues"]["work"]["messages"] == 0, stats


@pytest.mark.parametrize("case", sorted(RAW_BODIES))
async def test_unstorable_payload_is_422_json_and_leaves_nothing(stack: Stack, case: str) -> None:
    client = await stack.start_api()
    resp = await client.post(
        "/v1/jobs", content=RAW_BODIES[case], headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/json"
    error = resp.json()["error"]
    assert error["code"] in {"validation_error", "invalid_json"}, error
    assert "input" not in resp.text  # the body is not echoed back
    await assert_nothing_stored(stack)


async def test_a_batch_with_one_bad_job_stores_and_runs_none(stack: Stack) -> None:
    client = await stack.start_api()
    await stack.start_worker()
    body = {
        "jobs": [{"type": "echo", "payload": {"ok": 1}}, {"type": "echo", "payload": {"a.b": 1}}]
    }
    resp = await client.post("/v1/jobs/batch", json=body)
    assert resp.status_code == 422, resp.text
    (detail,) = resp.json()["error"]["details"]
    assert detail["loc"][:4] == ["body", "jobs", 1, "payload"]
    assert "'a.b'" in detail["msg"]
    await asyncio.sleep(1)  # a relay or worker that got hold of job 0 would have stored it by now
    await assert_nothing_stored(stack)
    assert (await client.get("/v1/jobs")).json()["items"] == []


async def test_payload_over_the_limit_is_413_naming_the_job(stack: Stack) -> None:
    client = await stack.start_api()
    big = {"type": "echo", "payload": {"blob": "x" * (300 * 1024)}}
    resp = await client.post("/v1/jobs/batch", json={"jobs": [{"type": "echo"}, big]})
    assert resp.status_code == 413, resp.text
    error = resp.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["index"] == 1
    assert error["limit_bytes"] == 256 * 1024
    single = await client.post("/v1/jobs", json=big)
    assert single.status_code == 413  # over the request body limit already
    assert single.json()["error"]["code"]
    await assert_nothing_stored(stack)


async def test_nul_and_bad_strings_in_urls_and_ids_are_4xx_not_503(stack: Stack) -> None:
    """Found by schemathesis: these reached FerretDB and came back as 503s."""
    client = await stack.start_api()
    listing = await client.get("/v1/jobs", params={"type": "\x00abc"})
    assert listing.status_code in (400, 422), listing.text
    path = await client.get("/v1/jobs/ab%00cd")
    assert path.status_code == 400
    assert path.json()["error"]["code"] == "invalid_url"
    redrive = await client.post(
        "/v1/dead-letters/redrive",
        content='{"ids": ["\\u0013\\ud8ca\\udf31D", "NUL\\u0000"]}',
        headers={"content-type": "application/json"},
    )
    assert redrive.status_code == 422, redrive.text
    fine = await client.post("/v1/dead-letters/redrive", json={"ids": ["no-such-job"]})
    assert fine.status_code == 200
    assert fine.json()["skipped"] == [{"job_id": "no-such-job", "reason": "no such job"}]


async def test_text_the_store_cannot_hold_is_422_wherever_it_is(stack: Stack) -> None:
    """Found by schemathesis in CI: a key name with NUL and a lone surrogate was a 503."""
    client = await stack.start_api()
    resp = await client.post(
        "/v1/keys",
        content='{"name": "\\u0000\\u00cc<!\\udaee\\udcebf", "scopes": ["admin"]}',
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "document_refused"
    assert (await client.get("/v1/keys")).json() == []
    nul = await client.post(
        "/v1/webhooks", json={"url": "https://example.com/h", "description": "a\x00b"}
    )
    assert nul.status_code == 422, nul.text
    assert (await client.get("/v1/webhooks")).json() == []
