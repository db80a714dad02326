"""The processes of a chaos run: the API, workers and the notifier, each
restartable, plus the local broker and store (tests/infra.py) to restart."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra import Infra


@dataclass
class Service:
    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no shutdown, no drain; in-flight work is cut off."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class ChaosStack:
    infra: Infra
    base_env: dict[str, str]
    workdir: Path
    api_port: int
    services: dict[str, Service] = field(default_factory=dict)

    def add(self, name: str, module: str, **env: str) -> Service:
        service = Service(name, module, self.base_env | env, self.workdir / f"{name}.log")
        self.services[name] = service
        service.start()
        return service

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def restart_broker(self) -> None:
        await asyncio.to_thread(self.infra.broker.stop)
        await asyncio.sleep(1)
        await asyncio.to_thread(self.infra.broker.start)

    async def restart_store(self) -> None:
        if self.infra.database is None:
            raise RuntimeError("the MongoDB-wire server was not started by scripts/infra.sh")
        await asyncio.to_thread(self.infra.database.stop)
        await asyncio.sleep(1)
        await asyncio.to_thread(self.infra.database.start)

    def close(self) -> None:
        for service in self.services.values():
            service.stop()
