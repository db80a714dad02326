"""The ``conveyor`` command-line client, run as a subprocess against a real stack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra import free_port
from tests.stack import ADMIN_KEY, Stack

pytestmark = pytest.mark.integration


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def cli_env(url: str, key: str | None = ADMIN_KEY) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env |= {"CONVEYOR_URL": url, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    if key is not None:
        env["CONVEYOR_API_KEY"] = key
    return env


def _interactive_sigint() -> None:
    """Ctrl-C as on a terminal: a suite started in the background (``cmd &``) runs
    with SIGINT ignored, and a child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def spawn(url: str, *args: str, key: str | None = ADMIN_KEY) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "conveyor_cli",
        *args,
        env=cli_env(url, key),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_interactive_sigint,
    )


async def cli(
    url: str, *args: str, key: str | None = ADMIN_KEY, stdin: str = "", timeout: float = 60
) -> Result:
    proc = await spawn(url, *args, key=key)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def api(stack: Stack, worker: bool = True) -> str:
    await stack.start_api()
    if worker:
        await stack.start_worker()
    assert stack.api_url is not None
    return stack.api_url


@pytest.mark.timeout(90)
async def test_submit_wait_prints_the_result(stack: Stack) -> None:
    url = await api(stack)
    res = await cli(url, "submit", "echo", "--payload", '{"hello": "cli"}', "--wait")
    assert res.code == 0, res
    assert "completed" in res.out
    assert '"cli"' in res.out
    res = await cli(url, "--json", "submit", "echo", "-p", '{"n": 7}', "--priority", "9", "-w")
    assert res.code == 0, res
    job = res.json()
    assert job["status"] == "completed"
    assert job["result"] == {"n": 7}
    assert job["priority"] == 9


@pytest.mark.timeout(90)
async def test_submit_wait_on_a_failing_job_exits_1(stack: Stack) -> None:
    url = await api(stack)
    res = await cli(url, "--json", "submit", "fail-absolute", "--max-retries", "0", "--wait")
    assert res.code == 1, res
    job = res.json()
    assert job["status"] == "failed"
    assert job["error"]


@pytest.mark.timeout(90)
async def test_submit_payload_from_a_file_and_without_wait(stack: Stack, tmp_path: Path) -> None:
    url = await api(stack, worker=False)
    payload = tmp_path / "payload.json"
    payload.write_text('{"from": "file"}')
    res = await cli(url, "--json", "submit", "echo", "--payload", f"@{payload}", "--delay", "60")
    assert res.code == 0, res
    job = res.json()
    assert job["status"] == "scheduled"
    assert job["payload"] == {"from": "file"}
    res = await cli(url, "--json", "submit", "echo", "--payload", "@-", stdin='{"from": "stdin"}')
    assert res.code == 0, res
    assert res.json()["payload"] == {"from": "stdin"}


async def _read_until(
    stream: asyncio.StreamReader, done: Any, timeout: float = 45
) -> list[dict[str, Any]]:
    """JSON lines from ``stream`` until ``done(lines)`` holds."""
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(lines):
        left = deadline - time.monotonic()
        assert left > 0, f"not all events arrived: {lines}"
        raw = await asyncio.wait_for(stream.readline(), left)
        assert raw, f"watch ended early after {lines}"
        lines.append(json.loads(raw))
    return lines


async def _wait_watching(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    line = await asyncio.wait_for(proc.stderr.readline(), 30)
    assert b"watching" in line, line


@pytest.mark.timeout(120)
async def test_watch_json_receives_the_events_of_new_jobs(stack: Stack) -> None:
    url = await api(stack)
    watch = await spawn(url, "--json", "watch", "--type", "echo", "--for", "90")
    try:
        await _wait_watching(watch)
        ids = {(await stack.submit("echo", payload={"i": i}))["id"] for i in range(2)}
        await stack.submit("sleep", payload={"seconds": 0})  # filtered out by --type

        def all_completed(lines: list[dict[str, Any]]) -> bool:
            done = {e["job_id"] for e in lines if e.get("event") == "job.completed"}
            return ids <= done

        assert watch.stdout is not None
        lines = await _read_until(watch.stdout, all_completed)
        events = [e for e in lines if str(e.get("event", "")).startswith("job.")]
        assert {e["job_id"] for e in events} <= ids
        assert all(e["job_type"] == "echo" for e in events)
        completed = [e for e in events if e["event"] == "job.completed"]
        assert all(e["status"] == "completed" and e["at"] for e in completed)
        watch.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(watch.wait(), 30) == 130
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()


@pytest.mark.timeout(120)
async def test_watch_stops_after_count_events(stack: Stack) -> None:
    url = await api(stack)
    watch = await spawn(url, "--json", "watch", "--status", "completed", "--count", "2")
    try:
        await _wait_watching(watch)
        ids = {(await stack.submit("echo"))["id"] for _ in range(2)}
        out, _ = await asyncio.wait_for(watch.communicate(), 45)
        assert watch.returncode == 0
        events = [json.loads(line) for line in out.decode().splitlines()]
        events = [e for e in events if e["event"].startswith("job.")]
        assert {e["job_id"] for e in events} == ids
        assert {e["status"] for e in events} == {"completed"}
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    res = await cli(url, "watch", "--for", "0.5")
    assert res.code == 0, res


@pytest.mark.timeout(90)
async def test_json_output_parses(stack: Stack) -> None:
    url = await api(stack)
    job = await stack.submit("echo", payload={"x": 1})
    await stack.wait_job(job["id"])
    got = (await cli(url, "--json", "get", job["id"])).json()
    assert got["id"] == job["id"]
    assert got["result"] == {"x": 1}
    page = (await cli(url, "--json", "list", "--type", "echo", "--limit", "1")).json()
    assert [j["id"] for j in page["items"]] == [job["id"]]
    stats = (await cli(url, "--json", "stats")).json()
    assert stats["by_status"]["completed"] >= 1
    human = await cli(url, "list", "--status", "completed")
    assert human.code == 0, human
    assert job["id"] in human.out
    assert (await cli(url, "stats")).code == 0


@pytest.mark.timeout(90)
async def test_a_wrong_key_exits_3_and_is_never_printed(stack: Stack) -> None:
    url = await api(stack, worker=False)
    secret = "cvk_wrong_" + "s3cr3t" * 8
    res = await cli(url, "get", "abc", key=secret)
    assert res.code == 3, res
    assert "401" in res.err
    res = await cli(url, "--json", "list", key=secret)
    assert res.code == 3, res
    assert json.loads(res.err)["status"] == 401
    res = await cli(url, "list", key=None)
    assert res.code == 3, res
    for text in (res.out, res.err):
        assert "s3cr3t" not in text


@pytest.mark.timeout(90)
async def test_exit_codes_for_not_found_bad_input_and_unavailable(stack: Stack) -> None:
    url = await api(stack, worker=False)
    res = await cli(url, "get", "0" * 32)
    assert res.code == 4, res
    assert "job_not_found" in res.err
    res = await cli(url, "--json", "cancel", "nope")
    assert res.code == 4, res
    assert json.loads(res.err)["error"]["code"] == "job_not_found"
    res = await cli(url, "submit", "no-such-type")
    assert res.code == 2, res
    assert "unknown_job_type" in res.err
    assert "echo" in res.err  # known_types
    res = await cli(url, "submit", "echo", "--payload", "{not json")
    assert res.code == 2, res
    res = await cli(url, "submit", "echo", "--priority", "11")
    assert res.code == 2, res
    res = await cli(url, "dead-letters", "purge")
    assert res.code == 2, res
    res = await cli(f"http://127.0.0.1:{free_port()}", "--timeout", "2", "get", "x")
    assert res.code == 5, res
    assert "unreachable" in res.err


@pytest.mark.timeout(120)
async def test_cancel_retry_delete(stack: Stack) -> None:
    url = await api(stack)
    job = (await cli(url, "--json", "submit", "echo", "--delay", "300")).json()
    res = await cli(url, "--json", "cancel", job["id"])
    assert res.code == 0, res
    assert res.json()["status"] == "cancelled"
    res = await cli(url, "cancel", job["id"])
    assert res.code == 2, res  # 409: already finished
    retried = (await cli(url, "--json", "retry", job["id"])).json()
    assert retried["retry_of"] == job["id"]
    res = await cli(url, "--json", "delete", job["id"])
    assert res.code == 0, res
    assert res.json() == {"deleted": job["id"]}
    assert (await cli(url, "get", job["id"])).code == 4


@pytest.mark.timeout(120)
async def test_submit_file_reports_bad_lines_and_accepts_the_rest(
    stack: Stack, tmp_path: Path
) -> None:
    url = await api(stack)
    lines = [
        json.dumps({"type": "echo", "payload": {"line": 1}}),
        "{this is not json",
        json.dumps({"type": "no-such-type"}),
        "",
        json.dumps({"type": "echo", "payload": {"line": 5}, "priority": 99}),
        json.dumps({"type": "echo", "payload": {"line": 6}}),
    ]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    res = await cli(url, "--json", "submit-file", str(path), "--batch-size", "2")
    assert res.code == 2, res
    report = res.json()
    assert report["accepted"] == 2
    assert [e["line"] for e in report["errors"]] == [2, 3, 5]
    assert report["errors"][1]["code"] == "unknown_job_type"
    assert "priority" in report["errors"][2]["message"]
    assert [j["line"] for j in report["jobs"]] == [1, 6]
    for entry in report["jobs"]:
        job = await stack.wait_job(entry["id"])
        assert job["result"] == {"line": entry["line"]}
    res = await cli(url, "submit-file", str(path))
    assert res.code == 2, res
    assert "accepted 2 of 5 jobs" in res.out
    assert f"{path}:2:" in res.err
    assert f"{path}:3:" in res.err


@pytest.mark.timeout(120)
async def test_dead_letters_list_redrive_purge(stack: Stack) -> None:
    url = await api(stack)
    failed = [(await stack.submit("fail-absolute", max_retries=0))["id"] for _ in range(2)]
    for job_id in failed:
        await stack.wait_job(job_id)
    page = (await cli(url, "--json", "dead-letters", "list")).json()
    assert {i["job_id"] for i in page["items"]} == set(failed)
    human = await cli(url, "dead-letters", "list")
    assert human.code == 0, human
    assert all(job_id in human.out for job_id in failed)
    res = await cli(url, "--json", "dead-letters", "redrive", failed[0], "nope")
    assert res.code == 0, res
    body = res.json()
    assert body["redriven"] == [failed[0]]
    assert body["skipped"] == [{"job_id": "nope", "reason": "no such job"}]
    assert (await cli(url, "dead-letters", "redrive")).code == 2  # neither IDS nor --all
    res = await cli(url, "--json", "dead-letters", "redrive", "--all")
    assert res.code == 0, res
    assert failed[1] in res.json()["redriven"]
    for job_id in failed:
        await stack.wait_job(job_id, timeout=30)
    res = await cli(url, "--json", "dead-letters", "purge", "--yes")
    assert res.code == 0, res
    assert "purged_jobs" in res.json()


@pytest.mark.timeout(90)
async def test_webhooks_create_list_rotate_delete(stack: Stack) -> None:
    url = await api(stack, worker=False)
    res = await cli(
        url,
        "--json",
        "webhooks",
        "create",
        "https://example.com/hook",
        "--events",
        "job.completed,job.failed",
        "--description",
        "cli test",
    )
    assert res.code == 0, res
    hook = res.json()
    assert hook["secret"].startswith("whsec_")
    assert hook["events"] == ["job.completed", "job.failed"]
    human = await cli(url, "webhooks", "create", "https://example.org/other")
    assert human.code == 0, human
    assert "whsec_" in human.out
    hooks = (await cli(url, "--json", "webhooks", "list")).json()
    assert {h["url"] for h in hooks} == {"https://example.com/hook", "https://example.org/other"}
    assert all("secret" not in h for h in hooks)
    listed = await cli(url, "webhooks", "list")
    assert hook["id"] in listed.out
    assert "whsec_" not in listed.out
    rotated = (await cli(url, "--json", "webhooks", "rotate", hook["id"])).json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != hook["secret"]
    res = await cli(url, "webhooks", "delete", hook["id"])
    assert res.code == 0, res
    assert (await cli(url, "webhooks", "delete", hook["id"])).code == 4
    res = await cli(url, "webhooks", "create", "not a url")
    assert res.code == 2, res
