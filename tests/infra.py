"""Where the tests' RabbitMQ and MongoDB come from: the one place that decides.

With a working Docker engine (and ``CONVEYOR_TEST_INFRA`` not ``local``) the
servers are testcontainers; otherwise they are the local servers that
``scripts/infra.sh up`` started (``make test`` does that first). Either way
the tests talk to real servers, never to fakes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class BrokerControl(Protocol):
    def stop(self) -> None: ...
    def start(self) -> None: ...


@dataclass
class LocalBroker:
    """Stops and starts the local RabbitMQ app (the node and its data stay)."""

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)

    def start(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
        subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, timeout=120)


@dataclass
class ContainerBroker:
    container_id: str

    def stop(self) -> None:
        subprocess.run(["docker", "stop", self.container_id], check=True, timeout=120)

    def start(self) -> None:
        subprocess.run(["docker", "start", self.container_id], check=True, timeout=120)


@dataclass
class LocalDatabase:
    """Kills and restarts the FerretDB that scripts/infra.sh started."""

    root: Path

    def stop(self) -> None:
        pid_file = self.root / ".infra" / "ferretdb.pid"
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def start(self) -> None:
        subprocess.run([str(self.root / "scripts" / "infra.sh"), "up"], check=True, timeout=300)


@dataclass
class Infra:
    amqp_url: str
    mongodb_url: str
    kind: str
    broker: BrokerControl
    database: BrokerControl | None = None
    management_url: str = "http://guest:guest@127.0.0.1:15672"  # RabbitMQ HTTP API
    _cleanup: list[object] = field(default_factory=list)

    def close(self) -> None:
        for c in self._cleanup:
            c.stop()  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


def docker_engine() -> bool:
    if os.environ.get("CONVEYOR_TEST_INFRA") == "local" or not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def _containers() -> Infra:
    from testcontainers.mongodb import MongoDbContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    amqp_port = free_port()  # fixed host port so a restarted broker comes back on it
    management_port = free_port()
    rabbit = (
        RabbitMqContainer("rabbitmq:3.13-management")
        .with_bind_ports(5672, amqp_port)
        .with_bind_ports(15672, management_port)
    )
    mongo = MongoDbContainer("mongo:7").with_bind_ports(27017, free_port())
    rabbit.start()
    mongo.start()
    return Infra(
        amqp_url=f"amqp://guest:guest@127.0.0.1:{amqp_port}/",
        mongodb_url=mongo.get_connection_url(),
        kind="testcontainers",
        management_url=f"http://guest:guest@127.0.0.1:{management_port}",
        broker=ContainerBroker(rabbit.get_wrapped_container().id),
        database=ContainerBroker(mongo.get_wrapped_container().id),
        _cleanup=[mongo, rabbit],
    )


def _local() -> Infra:
    amqp = os.environ.get("CONVEYOR_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    mongo = os.environ.get("CONVEYOR_MONGODB_URL", "mongodb://127.0.0.1:27017/")
    deadline = time.monotonic() + 30
    while not (port_open(amqp, 5672) and port_open(mongo, 27017)):
        if time.monotonic() > deadline:
            raise RuntimeError(
                "RabbitMQ or MongoDB is not reachable; run `scripts/infra.sh up` "
                "(make test does) or set CONVEYOR_AMQP_URL / CONVEYOR_MONGODB_URL"
            )
        time.sleep(0.5)
    root = Path(__file__).resolve().parent.parent
    ferretdb = (
        root / ".infra" / "ferretdb.pid"
    ).exists() and "CONVEYOR_MONGODB_URL" not in os.environ
    return Infra(
        amqp_url=amqp,
        mongodb_url=mongo,
        kind="local",
        broker=LocalBroker(),
        database=LocalDatabase(root) if ferretdb else None,
    )


def provide() -> Infra:
    return _containers() if docker_engine() else _local()
