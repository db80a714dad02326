"""deploy/rabbitmq/definitions.json, imported into a real RabbitMQ, is what the services declare."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import aio_pika
import httpx
import pytest

from conveyor_kernel.topology import build_topology, declare
from tests.infra import Infra

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "rabbitmq_definitions", ROOT / "scripts" / "rabbitmq_definitions.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_imported_definitions_match_what_services_declare(
    infra: Infra, namespace: str
) -> None:
    defs = generator().definitions(build_topology(namespace))
    vhost = f"v{namespace}"
    path = quote(vhost, safe="")
    async with httpx.AsyncClient(base_url=infra.management_url, timeout=30) as http:
        assert (await http.put(f"/api/vhosts/{path}")).status_code in (201, 204)
        try:
            perms = {"configure": ".*", "write": ".*", "read": ".*"}
            resp = await http.put(f"/api/permissions/{path}/guest", json=perms)
            assert resp.status_code in (201, 204), resp.text
            body = {k: defs[k] for k in ("exchanges", "queues", "bindings")}
            resp = await http.post(f"/api/definitions/{path}", json=body)
            assert resp.status_code in (201, 204), resp.text
            url = infra.amqp_url.rstrip("/") + "/" + path
            async with await aio_pika.connect(url) as connection:
                channel = await connection.channel()
                # Redeclaring with the services' arguments succeeds only if they are identical.
                declared = await declare(channel, build_topology(namespace))
                assert set(declared.queues) == {q["name"] for q in defs["queues"]}
                other = await connection.channel()
                with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                    await other.declare_queue(
                        build_topology(namespace).work_queue,
                        durable=True,
                        arguments={"x-max-priority": 5},
                    )
        finally:
            await http.delete(f"/api/vhosts/{path}")
