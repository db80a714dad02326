"""A batch whose messages the broker confirms only in part.

Found by the chaos run: the API answered 503 and deleted the batch's jobs, but a
message that had got through was already running from its snapshot; the
client's retry then ran those jobs a second time. Now a request is accepted once
its jobs are stored, and the outbox relay sends what the broker did not confirm.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration


def policy(name: str, pattern: str, definition: dict[str, object] | None) -> None:
    if definition is None:
        cmd = ["rabbitmqctl", "-q", "clear_policy", name]
    else:
        cmd = ["rabbitmqctl", "-q", "set_policy", "--apply-to", "queues", name, pattern]
        cmd.append(json.dumps(definition))
    subprocess.run(cmd, check=True, timeout=60, capture_output=True)


@pytest.mark.timeout(120)
async def test_unconfirmed_messages_are_sent_by_the_relay_not_taken_back(
    stack: Stack, namespace: str
) -> None:
    if stack.infra.kind != "local" or shutil.which("rabbitmqctl") is None:
        pytest.skip("sets a policy on the local broker")
    client = await stack.start_api()
    name = f"{namespace}-cap"
    # The work queue takes 3 messages and refuses (nacks) the rest.
    policy(name, f"^{namespace}\\.jobs\\.work$", {"max-length": 3, "overflow": "reject-publish"})
    try:
        resp = await client.post(
            "/v1/jobs/batch",
            json={"jobs": [{"type": "echo", "payload": {"i": i}} for i in range(5)]},
        )
    finally:
        policy(name, "", None)
    assert resp.status_code == 202, resp.text  # stored: accepted, whatever the broker said
    ids = resp.json()["ids"]
    assert "messages not confirmed; the outbox relay will send them" in stack.procs[0].log()
    await stack.start_worker()
    done = [await stack.wait_job(job_id, timeout=60) for job_id in ids]
    assert [d["status"] for d in done] == ["completed"] * 5
    assert all(len(d["attempts"]) == 1 for d in done)  # each ran once
    listed = (await client.get("/v1/jobs", params={"limit": 50})).json()["items"]
    assert sorted(j["id"] for j in listed) == sorted(ids)  # nothing else was created
