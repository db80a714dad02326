"""Webhooks end to end: a real receiver checks every signature with ``standardwebhooks``."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from typing import Any

import aio_pika
import httpx
import pytest
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Request, Response

from conveyor_kernel.notifications import new_secret
from conveyor_kernel.topology import build_topology
from tests.receivers import Receiver
from tests.stack import Stack, next_message

pytestmark = pytest.mark.integration

SECRET = new_secret()
LOCAL = json.dumps(["127.0.0.1/32"])
FAST = json.dumps([0.3, 0.6, 1.0])


async def start(
    stack: Stack,
    *,
    api: dict[str, Any] | None = None,
    worker: dict[str, Any] | None = None,
    **notifier: Any,
) -> None:
    await stack.start_api(webhook_secret=SECRET, **(api or {}))
    await stack.start_worker(**(worker or {}))
    notifier.setdefault("notify_allowed_networks", LOCAL)
    notifier.setdefault("notify_retry_schedule_s", FAST)
    notifier.setdefault("webhook_secret", SECRET)
    await stack.start_notifier(**notifier)


def hook(url: str, *events: str) -> dict[str, Any]:
    return {"webhook": {"url": url, **({"events": list(events)} if events else {})}}


async def subscribe(stack: Stack, url: str, *events: str) -> dict[str, Any]:
    resp = await stack.client.post("/v1/webhooks", json={"url": url, "events": list(events)})
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


async def test_job_webhook_is_signed_per_standard_webhooks(stack: Stack, httpserver: HTTPServer):
    receiver = Receiver(httpserver)
    await start(stack)
    job = await stack.submit("echo", payload={"n": 1}, notify=hook(receiver.url))
    (request,) = await receiver.wait_for(1)
    payload = Webhook(SECRET).verify(request.body, request.headers)
    assert payload["type"] == "job.completed"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["status"] == "completed"
    assert payload["data"]["result"] == {"n": 1}
    assert payload["data"]["url"].endswith(f"/v1/jobs/{job['id']}")
    assert request.headers["Webhook-Id"] == f"{job['id']}.1.completed"
    assert request.headers["Content-Type"] == "application/json"
    (delivery,) = await stack.deliveries(job["id"])
    assert delivery["status"] == "delivered"
    assert delivery["channel"] == "webhook"
    assert delivery["destination"] == receiver.url
    (attempt,) = delivery["attempts"]
    assert attempt["status_code"] == 200
    assert attempt["latency_ms"] > 0
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(new_secret()).verify(request.body, request.headers)
    notifier = next(p for p in stack.procs if p.name == "notifier")
    lines = [json.loads(x) for x in notifier.log().splitlines() if x.startswith("{")]
    about_job = [entry for entry in lines if entry.get("job_id") == job["id"]]
    assert {entry["event"] for entry in about_job} >= {"event fanned out", "delivery attempt"}
    assert all(entry["type"] == "echo" for entry in about_job), about_job


async def test_retries_after_500_keep_the_webhook_id(stack: Stack, httpserver: HTTPServer):
    receiver = Receiver(httpserver, replies=[Response("no", 500), Response("no", 503)])
    await start(stack)
    sub = await subscribe(stack, receiver.url, "job.completed")
    assert sub["secret"].startswith("whsec_")
    listed = (await stack.client.get(f"/v1/webhooks/{sub['id']}")).json()
    assert "secret" not in listed
    job = await stack.submit("echo")
    requests = await receiver.wait_for(3)
    assert {r.headers["Webhook-Id"] for r in requests} == {f"{job['id']}.1.completed"}
    for r in requests:
        Webhook(sub["secret"]).verify(r.body, r.headers)
    (delivery,) = await stack.deliveries(job["id"])
    assert delivery["subscription_id"] == sub["id"]
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
    assert [a["outcome"] for a in delivery["attempts"]] == ["retrying", "retrying", "delivered"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert gaps[0] >= 0.3 * 0.95
    assert gaps[1] >= 0.6 * 0.95
    print(
        "timeline:",
        [
            (round(r.at, 3), a["status_code"])
            for r, a in zip(requests, delivery["attempts"], strict=True)
        ],
    )


async def test_retry_after_is_honoured(stack: Stack, httpserver: HTTPServer):
    busy = Response("slow down", 429, headers={"Retry-After": "2"})
    receiver = Receiver(httpserver, replies=[busy])
    await start(stack, notify_retry_schedule_s=json.dumps([0.1]))
    job = await stack.submit("echo", notify=hook(receiver.url))
    first, second = await receiver.wait_for(2)
    assert second.at - first.at >= 2.0
    (delivery,) = await stack.deliveries(job["id"])
    assert [a["status_code"] for a in delivery["attempts"]] == [429, 200]


async def test_gone_disables_the_subscription(stack: Stack, httpserver: HTTPServer):
    receiver = Receiver(httpserver, replies=[Response("bye", 410)])
    # The event gate open: the second job's event reaches the notifier (and finds the
    # subscription disabled) however soon the worker would have learnt of the change.
    await start(stack, worker={"events_gate_refresh_s": 0})
    sub = await subscribe(stack, receiver.url, "job.completed")
    job = await stack.submit("echo")
    (delivery,) = await stack.deliveries(job["id"])
    assert delivery["status"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [410]
    after = (await stack.client.get(f"/v1/webhooks/{sub['id']}")).json()
    assert after["enabled"] is False
    assert "410" in after["disabled_reason"]
    second = await stack.submit("echo")
    await stack.wait_job(second["id"])
    notifier = next(p for p in stack.procs if p.name == "notifier")
    await stack.wait_log(notifier, f'"job_id": "{second["id"]}"')
    assert (await stack.client.get(f"/v1/jobs/{second['id']}/deliveries")).json() == []
    assert len(receiver.requests) == 1
    resp = await stack.client.patch(f"/v1/webhooks/{sub['id']}", json={"enabled": True})
    assert resp.json()["enabled"] is True
    assert resp.json()["disabled_reason"] is None


async def test_a_receiver_that_keeps_failing_gets_its_subscription_disabled(
    stack: Stack, httpserver: HTTPServer
):
    receiver = Receiver(httpserver, replies=[Response("down", 503)] * 6)
    await start(
        stack,
        notify_retry_schedule_s=json.dumps([0.1]),  # two attempts per delivery
        notify_disable_after_failed_deliveries=3,
    )
    sub = await subscribe(stack, receiver.url, "job.completed")
    for n in range(1, 4):
        job = await stack.submit("echo")
        (delivery,) = await stack.deliveries(job["id"])
        assert delivery["status"] == "failed"
        assert [a["status_code"] for a in delivery["attempts"]] == [503, 503]
        state = (await stack.client.get(f"/v1/webhooks/{sub['id']}")).json()
        assert state["failed_deliveries"] == n
        assert state["failing_since"] is not None
    assert state["enabled"] is False
    assert "3 deliveries in a row failed after every retry" in state["disabled_reason"]
    assert "503" in state["disabled_reason"]
    notifier = next(p for p in stack.procs if p.name == "notifier")
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{notifier.metrics_port}/metrics")).text
    assert 'conveyor_notifier_subscriptions_disabled_total{reason="failing"} 1.0' in metrics
    # disabled: no more attempts, though events keep coming
    quiet = await stack.submit("echo")
    await stack.wait_job(quiet["id"])
    await stack.wait_log(notifier, f'"job_id": "{quiet["id"]}"')
    assert (await stack.client.get(f"/v1/jobs/{quiet['id']}/deliveries")).json() == []
    assert len(receiver.requests) == 6
    # re-enabled: a fresh start, and the receiver (answering 200 now) resets nothing more
    again = await stack.client.patch(f"/v1/webhooks/{sub['id']}", json={"enabled": True})
    assert again.json()["failed_deliveries"] == 0
    assert again.json()["failing_since"] is None
    ok = await stack.submit("echo")
    (delivery,) = await stack.deliveries(ok["id"])
    assert delivery["status"] == "delivered"


async def test_private_destination_is_refused_without_allowlist(
    stack: Stack, httpserver: HTTPServer
):
    receiver = Receiver(httpserver)
    await start(stack, notify_allowed_networks="[]")
    job = await stack.submit("echo", notify=hook(receiver.url))
    (delivery,) = await stack.deliveries(job["id"])
    assert delivery["status"] == "failed"
    assert len(delivery["attempts"]) == 1  # refusals are not retried
    assert "loopback" in delivery["error"]
    assert receiver.requests == []


async def test_redirect_into_a_private_address_is_refused(stack: Stack, httpserver: HTTPServer):
    receiver = Receiver(httpserver, path="/final")
    port = httpserver.port
    public = f"http://127.0.0.1:{port}/start"
    httpserver.expect_request("/start", method="POST").respond_with_response(
        Response("", 307, headers={"Location": f"http://10.255.255.1:{port}/final"})
    )
    await start(stack)
    job = await stack.submit("echo", notify=hook(public))
    (delivery,) = await stack.deliveries(job["id"])
    assert delivery["status"] == "failed"
    # Another origin: not followed at all (so never resolved, never contacted).
    assert "redirect to another origin (http://10.255.255.1) not followed" in delivery["error"]
    assert receiver.requests == []


async def test_redirect_to_another_origin_is_not_followed(stack: Stack, httpserver: HTTPServer):
    receiver = Receiver(httpserver, path="/final")
    port = httpserver.port
    httpserver.expect_request("/start", method="POST").respond_with_response(
        Response("", 308, headers={"Location": f"http://localhost:{port}/final"})
    )
    await start(stack, notify_allowed_networks="127.0.0.0/8,::1/128")
    job = await stack.submit("echo", notify=hook(f"http://127.0.0.1:{port}/start"))
    (delivery,) = await stack.deliveries(job["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["status_code"] == 308
    assert "redirect to another origin (http://localhost) not followed" in delivery["error"]
    assert receiver.requests == []  # the signed request never left its origin


async def test_killing_the_notifier_mid_delivery_loses_nothing(
    stack: Stack, httpserver: HTTPServer
):
    arrived = threading.Event()

    def stall(_: Request) -> Response:
        arrived.set()
        time.sleep(3)
        return Response("late", 200)

    receiver = Receiver(httpserver, replies=[stall])
    await start(stack)
    notifier = next(p for p in stack.procs if p.name == "notifier")
    job = await stack.submit("echo", notify=hook(receiver.url))
    await receiver.wait_for(1)
    assert arrived.is_set()
    stack.stop(notifier, signal.SIGKILL)
    await stack.start_notifier(
        notify_allowed_networks=LOCAL, notify_retry_schedule_s=FAST, webhook_secret=SECRET
    )
    (delivery,) = await stack.deliveries(job["id"])
    assert delivery["status"] == "delivered"
    ids = {r.headers["Webhook-Id"] for r in await receiver.wait_for(2)}
    assert ids == {f"{job['id']}.1.completed"}  # the same message, delivered again


async def test_events_wait_while_no_notifier_runs(stack: Stack, httpserver: HTTPServer):
    receiver = Receiver(httpserver)
    await stack.start_api(webhook_secret=SECRET)
    await stack.start_worker()
    jobs = [await stack.submit("echo", notify=hook(receiver.url)) for _ in range(5)]
    for job in jobs:
        await stack.wait_job(job["id"])
    await stack.start_notifier(notify_allowed_networks=LOCAL, webhook_secret=SECRET)
    await receiver.wait_for(5)
    got = {json.loads(r.body)["data"]["id"] for r in receiver.requests}
    assert got == {j["id"] for j in jobs}


async def test_rotated_secret_signs_with_both(stack: Stack, httpserver: HTTPServer):
    receiver = Receiver(httpserver)
    await start(stack)
    sub = await subscribe(stack, receiver.url, "job.completed")
    rotated = (await stack.client.post(f"/v1/webhooks/{sub['id']}/rotate-secret")).json()
    assert rotated["secret"] != sub["secret"]
    await stack.submit("echo")
    (request,) = await receiver.wait_for(1)
    assert len(request.headers["Webhook-Signature"].split(" ")) == 2
    Webhook(sub["secret"]).verify(request.body, request.headers)
    Webhook(rotated["secret"]).verify(request.body, request.headers)


async def test_retrying_and_failed_events_reach_subscribers(stack: Stack, httpserver: HTTPServer):
    receiver = Receiver(httpserver)
    await start(stack)
    await subscribe(stack, receiver.url, "job.retrying", "job.failed")
    job = await stack.submit("fail-absolute", max_retries=1, backoff={"base_s": 0.2})
    requests = await receiver.wait_for(2)
    types = [json.loads(r.body)["type"] for r in requests]
    assert types == ["job.retrying", "job.failed"]
    assert "fail-absolute always fails" in json.loads(requests[1].body)["data"]["error"]
    deliveries = await stack.deliveries(job["id"], count=2)
    assert sorted(d["event_type"] for d in deliveries) == ["job.failed", "job.retrying"]


async def test_cancelled_queued_job_notifies(stack: Stack, httpserver: HTTPServer):
    receiver = Receiver(httpserver)
    await stack.start_api(webhook_secret=SECRET)
    await stack.start_notifier(notify_allowed_networks=LOCAL, webhook_secret=SECRET)
    job = await stack.submit("echo", delay_s=60, notify=hook(receiver.url))
    assert (await stack.client.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 200
    (request,) = await receiver.wait_for(1)
    assert json.loads(request.body)["type"] == "job.cancelled"
    Webhook(SECRET).verify(request.body, request.headers)


async def test_slow_receiver_times_out_and_is_retried(stack: Stack, httpserver: HTTPServer):
    def slow(_: Request) -> Response:
        time.sleep(1.5)
        return Response("too late", 200)

    receiver = Receiver(httpserver, replies=[slow])
    await start(stack, webhook_timeout_s="0.5")
    job = await stack.submit("echo", notify=hook(receiver.url))
    (delivery,) = await stack.deliveries(job["id"])
    *timed_out, last = delivery["attempts"]
    assert timed_out  # the receiver is single-threaded: a retry may hit it while it stalls
    for attempt in timed_out:
        assert attempt["status_code"] is None
        assert attempt["error"] == "timed out after 0.5 s"
        assert attempt["outcome"] == "retrying"
    assert last["status_code"] == 200
    assert delivery["status"] == "delivered"


async def test_malformed_notifier_messages_are_parked(stack: Stack, amqp) -> None:
    await stack.start_api()
    await stack.start_notifier()
    topology = build_topology(stack.namespace)
    channel = await amqp.channel()
    for exchange, key in (
        (topology.events_exchange, "job.completed"),
        (topology.notifier_exchange, "deliver"),
    ):
        target = await channel.get_exchange(exchange)
        await target.publish(aio_pika.Message(b"not json", message_id="junk"), routing_key=key)
    first = await next_message(amqp, topology.notifier_parking_lot_queue)
    second = await next_message(amqp, topology.notifier_parking_lot_queue)
    assert first.body == second.body == b"not json"
