"""A job longer than RabbitMQ's consumer timeout runs once.

The broker closes a channel whose delivery stays unacked past
``consumer_timeout`` and hands the message to another consumer, while the
worker that holds it is alive and still running the job. The second worker must
see that (conveyor_worker.liveness) and wait, not mark the attempt lost and run
the job again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration

SHORT_TIMEOUT_MS = 2000
# RabbitMQ checks the timeout on a channel tick (every 60 s in 3.10), so the job
# must still run a while after the first tick to be taken away mid-run.
JOB_S = 75


def _set_consumer_timeout(ms: int) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", "eval", f"application:set_env(rabbit, consumer_timeout, {ms})."],
        check=True,
        timeout=60,
        capture_output=True,
    )


def _consumer_timeout() -> int:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "eval", "application:get_env(rabbit, consumer_timeout)."],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip().strip("{}").split(",")[1])


@contextlib.contextmanager
def short_consumer_timeout() -> Iterator[None]:
    previous = _consumer_timeout()
    _set_consumer_timeout(SHORT_TIMEOUT_MS)
    try:
        yield
    finally:
        _set_consumer_timeout(previous)


def _events(log: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


@pytest.mark.timeout(240)
async def test_long_job_taken_back_by_the_consumer_timeout_runs_once(stack: Stack) -> None:
    if stack.infra.kind != "local" or shutil.which("rabbitmqctl") is None:
        pytest.skip("needs the local broker's rabbitmqctl to shorten its consumer timeout")
    with short_consumer_timeout():
        await stack.start_api()
        # Channels opened now get the short timeout.
        workers = [
            await stack.start_worker(worker_recheck_s=2, worker_concurrency=1) for _ in range(2)
        ]
        job = await stack.submit("sleep", payload={"seconds": JOB_S}, max_retries=3)
        done = await stack.wait_job(job["id"], timeout=JOB_S + 90)

    logs = "\n".join(w.log() for w in workers)
    # The broker did take the message back from the live worker mid-run ...
    assert "delivery acknowledgement on channel" in logs, stack.logs()
    deferred = [
        e
        for e in _events(logs)
        if e.get("reason") == "the attempt is still running in a live worker"
        and e.get("job_id") == job["id"]
    ]
    assert deferred, stack.logs()
    # ... and the job still ran exactly once, to completion.
    assert done["status"] == "completed", done
    assert [a["outcome"] for a in done["attempts"]] == ["completed"], done["attempts"]
    assert done["result"] == {"slept_s": JOB_S}
    started = [
        e
        for e in _events(logs)
        if e.get("event") == "attempt started" and e.get("job_id") == job["id"]
    ]
    assert len(started) == 1, started
