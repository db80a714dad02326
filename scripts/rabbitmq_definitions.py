"""Write deploy/rabbitmq/definitions.json: vhost, users and the whole topology of a namespace.

RabbitMQ imports it at boot (``load_definitions`` in deploy/rabbitmq/rabbitmq.conf),
so the exchanges and queues exist before any service starts, with exactly the
arguments the services declare (a mismatch would fail their declare). Run it
after changing the topology; a unit test fails while the file is stale.

    uv run python scripts/rabbitmq_definitions.py [--namespace conveyor] [--check]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from conveyor_kernel.topology import Topology, build_topology

OUT = Path(__file__).resolve().parent.parent / "deploy" / "rabbitmq" / "definitions.json"
VHOST = "/"
# Development credentials for the compose stack; change them (and the services'
# CONVEYOR_AMQP_URL) for anything shared. RabbitMQ's SHA-256 scheme:
# base64(salt + sha256(salt + password)); a fixed salt keeps the file reproducible.
USERS = {"conveyor": "conveyor", "guest": "guest"}
SALT = b"cnvy"


def password_hash(password: str) -> str:
    digest = hashlib.sha256(SALT + password.encode()).digest()
    return base64.b64encode(SALT + digest).decode()


def definitions(topology: Topology) -> dict[str, Any]:
    return {
        "rabbit_version": "3.13.0",
        "users": [
            {
                "name": name,
                "password_hash": password_hash(password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": ["administrator"],
                "limits": {},
            }
            for name, password in USERS.items()
        ],
        "vhosts": [{"name": VHOST}],
        "permissions": [
            {"user": name, "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"}
            for name in USERS
        ],
        "exchanges": [
            {
                "name": ex.name,
                "vhost": VHOST,
                "type": ex.type.value,
                "durable": ex.durable,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for ex in topology.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": VHOST,
                "durable": q.durable,
                "auto_delete": False,
                "arguments": q.argument_dict(),
            }
            for q in topology.queues
        ],
        "bindings": [
            {
                "source": b.exchange,
                "vhost": VHOST,
                "destination": q.name,
                "destination_type": "queue",
                "routing_key": b.routing_key,
                "arguments": {},
            }
            for q in topology.queues
            for b in q.bindings
        ],
    }


def render(namespace: str) -> str:
    return json.dumps(definitions(build_topology(namespace)), indent=2) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--namespace", default="conveyor")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = ap.parse_args()
    text = render(args.namespace)
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run scripts/rabbitmq_definitions.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
