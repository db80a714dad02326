"""Shared fixtures: real servers (tests/infra.py decides which), isolated per test.

Every test gets its own broker namespace (so its own exchanges and queues) and
its own MongoDB database; both are deleted afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from conveyor_kernel.mongo import Document, make_client
from conveyor_kernel.store import JobStore
from conveyor_kernel.topology import build_topology
from conveyor_kernel.topology import delete as delete_topology
from tests.infra import Infra, provide
from tests.stack import Stack


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    servers = provide()
    yield servers
    servers.close()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def mongo(infra: Infra, namespace: str) -> AsyncIterator[AsyncMongoClient[Document]]:
    client = make_client(infra.mongodb_url, 5000, "conveyor-tests")
    yield client
    await client.drop_database(f"conveyor_{namespace}")
    await client.close()


@pytest.fixture
def store(mongo: AsyncMongoClient[Document], namespace: str) -> JobStore:
    return JobStore(mongo, f"conveyor_{namespace}")


@pytest.fixture
async def amqp(infra: Infra, namespace: str) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    connection = await aio_pika.connect(infra.amqp_url)
    yield connection
    with contextlib.suppress(Exception):  # it may have died with a broker restart
        await connection.close()
    async with await aio_pika.connect(infra.amqp_url) as cleanup:
        channel = await cleanup.channel()
        await delete_topology(channel, build_topology(namespace))


@pytest.fixture
async def stack(
    infra: Infra,
    namespace: str,
    tmp_path: Path,
    mongo: AsyncMongoClient[Document],
    amqp: aio_pika.abc.AbstractConnection,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Stack]:
    s = Stack(infra=infra, namespace=namespace, db_name=f"conveyor_{namespace}", workdir=tmp_path)
    yield s
    await s.close()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(s.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    return ("127.0.0.1", 0)
