"""The MongoDB-wire server stays alive when clients die in the middle of writes.

FerretDB v1 deadlocks once its PostgreSQL pool is exhausted: an update holds one
pooled connection and asks for a second for its transaction (see
/work/shared/notes/ferretdb.md). ``scripts/infra.sh`` sizes that pool for the
services' bound (``CONVEYOR_MONGODB_MAX_POOL``, 16 per process); these tests put
that bound under stress and then check that the server still answers ``ping``
and a write + read. They check liveness only, never speed: a wedged server fails
them within seconds instead of hanging the suite, and the teardown restarts a
FerretDB that ``scripts/infra.sh`` started (``infra.sh heal``) so the tests after
a failure still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from tests.infra import Infra, LocalDatabase

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

CLIENT_POOL = 16  # the services' default CONVEYOR_MONGODB_MAX_POOL
PROBE_TIMEOUT_S = 10.0  # generous: a healthy server answers in milliseconds
ROOT = Path(__file__).resolve().parents[2]

# One client process: CLIENT_POOL tasks writing as fast as they can through one
# pymongo pool of CLIENT_POOL connections, for at most `seconds`. It prints
# "writing" once every task has had a write acknowledged, and a JSON summary if
# it is not killed first.
WRITER = r"""
import asyncio, json, sys, time, uuid
from pymongo import AsyncMongoClient, ReplaceOne

url, db_name, mode, tag, seconds, pool = sys.argv[1:7]
seconds, pool = float(seconds), int(pool)

async def main():
    client = AsyncMongoClient(url, maxPoolSize=pool, serverSelectionTimeoutMS=10000,
                              socketTimeoutMS=30000, appname=f"wedge-{tag}")
    docs = client[db_name]["docs"]
    stop = time.monotonic() + seconds
    ops, errors, first = 0, [], asyncio.Barrier(pool + 1)

    async def one(task, n):
        key = f"{tag}-{task}"
        kind = task % 3 if mode == "mixed" else 0
        if mode == "bulk":
            await docs.bulk_write([ReplaceOne({"_id": f"{key}-{k}"}, {"n": n, "k": k}, upsert=True)
                                   for k in range(4)], ordered=False)
        elif kind == 0:
            await docs.update_one({"_id": key}, {"$inc": {"n": 1}, "$set": {"at": time.time()},
                                                 "$push": {"log": n}}, upsert=True)
        elif kind == 1:
            await docs.replace_one({"_id": key}, {"n": n, "at": time.time()}, upsert=True)
        else:
            await docs.insert_one({"_id": f"{key}-{uuid.uuid4().hex}", "n": n})

    async def loop(task):
        nonlocal ops
        n = 0
        while time.monotonic() < stop:
            try:
                await one(task, n)
                ops += 1
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(0.1)
            if n == 0:
                await first.wait()
            n += 1

    tasks = [asyncio.create_task(loop(t)) for t in range(pool)]
    await first.wait()
    print("writing", flush=True)
    await asyncio.gather(*tasks)
    print(json.dumps({"ops": ops, "errors": errors[:5], "error_count": len(errors)}), flush=True)
    await client.close()

asyncio.run(main())
"""


class Writers:
    """Writer subprocesses of one test; whatever is still running at teardown is killed."""

    def __init__(self, url: str, db_name: str) -> None:
        self.url, self.db_name = url, db_name
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, mode: str, *, seconds: float = 60.0) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            self.url,
            self.db_name,
            mode,
            uuid.uuid4().hex[:8],
            str(seconds),
            str(CLIENT_POOL),
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    async def writing(proc: asyncio.subprocess.Process) -> None:
        """Wait until all of the process's tasks have had a write acknowledged."""
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
        except TimeoutError:
            pytest.fail("a writer had no write acknowledged within 30 s: is the server wedged?")
        assert line.strip() == b"writing", f"writer failed to start (exit {proc.returncode})"

    @staticmethod
    async def kill(proc: asyncio.subprocess.Process) -> None:
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        assert proc.returncode == -signal.SIGKILL

    @staticmethod
    async def summary(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
        assert proc.stdout is not None
        try:
            out = await asyncio.wait_for(proc.stdout.read(), timeout)
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            pytest.fail(f"a writer did not finish within {timeout:g} s: is the server wedged?")
        assert proc.returncode == 0, f"writer exited with {proc.returncode}"
        return dict(json.loads(out.decode().strip().splitlines()[-1]))

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


async def answers(url: str, db_name: str) -> str | None:
    """None if a fresh client gets a ping, a write and a read through; else why not."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url,
        maxPoolSize=1,
        serverSelectionTimeoutMS=int(PROBE_TIMEOUT_S * 1000),
        connectTimeoutMS=int(PROBE_TIMEOUT_S * 1000),
        socketTimeoutMS=int(PROBE_TIMEOUT_S * 1000) + 5000,
        appname="wedge-probe",
    )
    step = "ping"
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await client.admin.command("ping")
        key = uuid.uuid4().hex
        docs = client[db_name]["probe"]
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            step = "insert_one"
            await docs.insert_one({"_id": key, "n": 0})
            step = "update_one"
            await docs.update_one({"_id": key}, {"$inc": {"n": 1}})
            step = "find_one"
            found = await docs.find_one({"_id": key})
        if found != {"_id": key, "n": 1}:
            return f"read back {found!r} after the write"
    except TimeoutError:
        return f"{step} did not answer within {PROBE_TIMEOUT_S:g} s (wedged?)"
    except PyMongoError as exc:
        return f"{step} failed: {type(exc).__name__}: {exc}"
    finally:
        await client.close()
    return None


@pytest.fixture
async def writers(
    infra: Infra, namespace: str, mongo: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[Writers]:
    # Depends on `mongo` so that its teardown (dropping the database) runs after ours.
    w = Writers(infra.mongodb_url, f"conveyor_{namespace}")
    yield w
    await w.close()
    if isinstance(infra.database, LocalDatabase) and await answers(infra.mongodb_url, w.db_name):
        # Leave a working server to the tests after this one (infra.sh logs why it restarts).
        await asyncio.to_thread(
            subprocess.run, [str(ROOT / "scripts" / "infra.sh"), "heal"], timeout=120, check=False
        )


async def test_clients_killed_mid_write_leave_the_server_answering(
    infra: Infra, writers: Writers
) -> None:
    for round_ in range(3):  # update_one / replace_one / insert_one, 16 at once
        proc = await writers.start("mixed")
        await writers.writing(proc)
        await asyncio.sleep(1.0 + 0.25 * round_)  # writes in flight when it dies
        await writers.kill(proc)
    proc = await writers.start("bulk")  # unordered bulk_writes of 4 ReplaceOne, 16 at once
    await writers.writing(proc)
    await asyncio.sleep(1.0)
    await writers.kill(proc)

    problem = await answers(infra.mongodb_url, writers.db_name)
    assert problem is None, f"after killing clients mid-write: {problem}"


async def test_three_processes_at_the_services_pool_bound_leave_the_server_answering(
    infra: Infra, writers: Writers
) -> None:
    seconds = 5.0
    procs = [await writers.start("mixed", seconds=seconds) for _ in range(3)]  # 48 at once
    for proc in procs:
        await writers.writing(proc)
    problem = await answers(infra.mongodb_url, writers.db_name)  # under the load
    assert problem is None, f"under 3 x {CLIENT_POOL} concurrent writes: {problem}"

    summaries = [await writers.summary(proc, seconds + 30) for proc in procs]
    for s in summaries:
        assert s["ops"] > 0
        assert s["error_count"] == 0, s["errors"]
    problem = await answers(infra.mongodb_url, writers.db_name)
    assert problem is None, f"after 3 x {CLIENT_POOL} concurrent writes: {problem}"
