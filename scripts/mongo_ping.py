"""Send one MongoDB ``ping`` with a hard deadline; stdlib only.

Used by ``scripts/infra.sh check|heal|up`` and the ``make run`` watchdog
(scripts/supervise.py) to tell a wedged FerretDB (port open, no answer) from a
stopped one. It speaks OP_MSG directly, so it needs neither pymongo nor the
project's virtualenv, and no driver retries or server selection blur the result.

    python scripts/mongo_ping.py [--host 127.0.0.1] [--port 27017] [--timeout 5]

Exit codes: 0 answered ``ok: 1``; 1 connected but no reply within the timeout
(wedged?); 2 could not connect (not running); 3 answered, but not ``ok: 1``.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
from dataclasses import dataclass

OK, TIMED_OUT, UNREACHABLE, NOT_OK = 0, 1, 2, 3
OP_MSG = 2013


@dataclass(frozen=True)
class PingResult:
    code: int  # OK, TIMED_OUT, UNREACHABLE or NOT_OK
    seconds: float
    detail: str


def _ping_message(request_id: int) -> bytes:
    # BSON {ping: 1 (int32), $db: "admin"}
    elements = b"\x10ping\x00" + struct.pack("<i", 1)
    elements += b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00"
    document = struct.pack("<i", 4 + len(elements) + 1) + elements + b"\x00"
    body = struct.pack("<I", 0) + b"\x00" + document  # flagBits, section kind 0
    return struct.pack("<iiii", 16 + len(body), request_id, 0, OP_MSG) + body


def _recv_exactly(sock: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        data += chunk
    return data


def ping(host: str = "127.0.0.1", port: int = 27017, timeout: float = 5.0) -> PingResult:
    """One ``ping`` on a fresh connection; the whole exchange must fit in ``timeout``."""
    start = time.monotonic()
    deadline = start + timeout
    try:
        sock = socket.create_connection((host, port), timeout=min(timeout, 2.0))
    except OSError as exc:
        return PingResult(UNREACHABLE, time.monotonic() - start, f"cannot connect: {exc}")
    try:
        with sock:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.sendall(_ping_message(1))
            header = _recv_exactly(sock, 16, deadline)
            length = struct.unpack("<i", header[:4])[0]
            reply = _recv_exactly(sock, length - 16, deadline)
    except TimeoutError:
        return PingResult(TIMED_OUT, time.monotonic() - start, f"no reply within {timeout:g} s")
    except OSError as exc:
        return PingResult(NOT_OK, time.monotonic() - start, f"connection failed: {exc}")
    elapsed = time.monotonic() - start
    # A ping reply is flat; its top-level ok is a double (or an int32 on some servers).
    if (
        b"\x01ok\x00" + struct.pack("<d", 1.0) in reply
        or b"\x10ok\x00" + struct.pack("<i", 1) in reply
    ):
        return PingResult(OK, elapsed, f"answered in {elapsed:.3f} s")
    return PingResult(NOT_OK, elapsed, f"unexpected reply {reply[:120]!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    result = ping(args.host, args.port, args.timeout)
    if not args.quiet:
        print(f"ping {args.host}:{args.port}: {result.detail}")
    return result.code


if __name__ == "__main__":
    sys.exit(main())
