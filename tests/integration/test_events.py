"""Job events reach ``<ns>.notifier.events`` even when the writer dies before publishing."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest

from conveyor_kernel.broker import Publisher, connect
from conveyor_kernel.events import EVENT_OUTBOX_COLLECTION, Events
from conveyor_kernel.model import Job, JobStatus, JobSubmission, utcnow
from conveyor_kernel.store import JobStore
from conveyor_kernel.topology import build_topology
from tests.infra import Infra
from tests.stack import Stack, next_message

pytestmark = pytest.mark.integration


async def next_event(amqp: aio_pika.abc.AbstractConnection, namespace: str, timeout: float = 10):
    return await next_message(amqp, build_topology(namespace).notifier_events_queue, timeout)


async def test_staged_event_is_relayed_only_if_its_transition_landed(
    infra: Infra, namespace: str, store: JobStore, mongo, amqp
) -> None:
    connection = await connect(infra.amqp_url, "test")
    publisher = Publisher(connection, build_topology(namespace), 5)
    await publisher.open()
    events = Events(mongo, f"conveyor_{namespace}", publisher, public_url="http://x")
    try:
        job = Job.from_submission(JobSubmission(type="echo"), default_timeout_s=5)
        await store.insert(job)
        # The transition lands (CAS) but the process "dies" before publishing.
        done = job.model_copy(update={"status": JobStatus.COMPLETED, "finished_at": utcnow()})
        # A first CAS round that lost staged the same event with another body.
        await events.stage(done.model_copy(update={"result": {"round": 1}}))
        stored = await store.compare_and_set(await events.stage(done))
        assert stored is not None
        assert stored.emitted == [f"{job.id}.0.completed"]
        # A staged event whose CAS lost: never published.
        loser = job.model_copy(update={"status": JobStatus.CANCELLED})
        await events.stage(loser)
        assert await events.relay_once(store, grace_s=60) == 0  # still within grace
        await asyncio.sleep(0.3)
        assert await events.relay_once(store, grace_s=0.1) == 1
        message = await next_event(amqp, namespace)
        body = json.loads(message.body)
        assert body["id"] == f"{job.id}.0.completed"
        assert body["job"]["result"] is None  # the winning round's body, not round 1's
        assert message.routing_key == "job.completed"
        outbox = mongo[f"conveyor_{namespace}"][EVENT_OUTBOX_COLLECTION]
        assert [d["_id"] for d in await outbox.find().to_list()] == [f"{job.id}.0.cancelled"]
    finally:
        await publisher.close()
        await connection.close()


TO_ALL = {"email": {"to": ["ops@example.com"], "events": ["job.retrying", "job.completed"]}}


async def test_worker_publishes_one_event_per_finished_attempt(stack: Stack, amqp) -> None:
    await stack.start_api()
    await stack.start_worker()
    job = await stack.submit("fail", max_retries=1, backoff={"base_s": 0.1}, notify=TO_ALL)
    await stack.wait_job(job["id"])
    first = json.loads((await next_event(amqp, stack.namespace)).body)
    second = json.loads((await next_event(amqp, stack.namespace)).body)
    assert [first["type"], second["type"]] == ["job.retrying", "job.completed"]
    assert [first["id"], second["id"]] == [f"{job['id']}.1.retrying", f"{job['id']}.2.completed"]
    assert second["job"]["attempts"] == 2


async def test_events_can_be_switched_off(stack: Stack, amqp) -> None:
    await stack.start_api(events_enabled="false")
    await stack.start_worker(events_enabled="false")
    job = await stack.submit("echo")
    await stack.wait_job(job["id"])
    with pytest.raises(AssertionError, match="nothing arrived"):
        await next_event(amqp, stack.namespace, timeout=1)
    resp = await stack.client.post(
        "/v1/jobs", json={"type": "echo", "notify": {"email": {"to": ["a@example.com"]}}}
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "events_disabled"


async def test_no_event_is_published_where_nothing_consumes_it(stack: Stack, amqp, mongo) -> None:
    """No subscription, no notify, no stream client: the event gate keeps the event
    (and its place on ``emitted``) back; a subscription opens it for its types."""
    await stack.start_api()
    await stack.start_worker()
    quiet = await stack.submit("echo")
    await stack.wait_job(quiet["id"])
    with pytest.raises(AssertionError, match="nothing arrived"):
        await next_event(amqp, stack.namespace, timeout=1)
    stored = await mongo[stack.db_name]["jobs"].find_one({"_id": quiet["id"]})
    assert stored["status"] == "completed"
    assert stored["emitted"] == []

    resp = await stack.client.post(
        "/v1/webhooks", json={"url": "https://example.com/hook", "events": ["job.completed"]}
    )
    assert resp.status_code == 201, resp.text
    wanted = await stack.submit("echo")
    await stack.wait_job(wanted["id"])
    event = json.loads((await next_event(amqp, stack.namespace)).body)
    assert event["id"] == f"{wanted['id']}.1.completed"
    # A type no subscription wants stays quiet.
    failed = await stack.submit("fail-absolute", max_retries=0)
    assert (await stack.wait_job(failed["id"]))["status"] == "failed"
    with pytest.raises(AssertionError, match="nothing arrived"):
        await next_event(amqp, stack.namespace, timeout=1)
